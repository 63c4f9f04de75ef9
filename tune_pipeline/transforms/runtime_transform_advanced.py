"""The basic recipe plus colour jitter and cutout (an 8x8 square per 32x32
image, a quarter of its side, as DeVries & Taylor found best on CIFAR-10)."""

from tune_pipeline import augment as A


def train_transform(images, ctx):
    x = A.random_crop(images, padding=4, generator=ctx.generator)
    x = A.random_flip(x, generator=ctx.generator)
    x = A.color_jitter(x, ctx.generator, brightness=0.2, contrast=0.2, saturation=0.2)
    x = A.normalize(x, ctx.mean, ctx.std)
    # After normalisation 0 is the dataset mean, so the hole carries no signal.
    return A.cutout(x, size=max(1, x.shape[-1] // 4), generator=ctx.generator, p=0.5)


def test_transform(images, ctx):
    return A.normalize(images, ctx.mean, ctx.std)
