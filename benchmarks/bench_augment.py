"""The batched augmentation ops, images/s on one batch of 128 CIFAR-sized
uint8 images, against the pad-then-index crop they replaced (same run).

    python benchmarks/bench_augment.py
"""

from __future__ import annotations

import torch

from common import Timer
from tune_pipeline import augment as A


def pad_then_index_crop(images, padding, generator):
    """The first version: a float padded copy, then 4-tensor advanced indexing."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images.float(), (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return out.to(images.dtype)


def rate(fn, repeats=300) -> float:
    for _ in range(10):
        fn()
    with Timer() as t:
        for _ in range(repeats):
            fn()
    return repeats * 128 / t.seconds


def main():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=g)
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    old = rate(lambda: pad_then_index_crop(x, 4, g))
    new = rate(lambda: A.random_crop(x, 4, g))
    print(f"random_crop      {new:9.0f} img/s   pad-then-index {old:9.0f} img/s   ratio {new / old:4.1f}x")
    for name, fn in (("random_flip", lambda: A.random_flip(x, g)),
                     ("cutout", lambda: A.cutout(x, 8, g)),
                     ("color_jitter", lambda: A.color_jitter(x, g, 0.2, 0.2, 0.2)),
                     ("normalize", lambda: A.normalize(x, mean, std)),
                     ("crop+flip+norm", lambda: A.normalize(A.random_flip(A.random_crop(x, 4, g), g), mean, std))):
        print(f"{name:<16} {rate(fn):9.0f} img/s")


if __name__ == "__main__":
    main()
