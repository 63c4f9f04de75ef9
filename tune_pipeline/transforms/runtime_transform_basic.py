"""The standard CIFAR recipe: 4-pixel reflect-padded random crop, horizontal
flip, per-dataset normalisation.  Runs on whole batches on the training device."""

from tune_pipeline import augment as A


def train_transform(images, ctx):
    x = A.random_crop(images, padding=4, generator=ctx.generator)
    x = A.random_flip(x, generator=ctx.generator)
    return A.normalize(x, ctx.mean, ctx.std)


def test_transform(images, ctx):
    return A.normalize(images, ctx.mean, ctx.std)
