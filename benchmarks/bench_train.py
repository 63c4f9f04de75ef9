"""Our data path and training step against the original pipeline's: a
torchvision ImageFolder with per-image PIL transforms in a DataLoader.

Same process, same images (CIFAR-10 JPEGs), same model, same batch size.
Prints images/second for each and the ratio.

    python benchmarks/bench_train.py [--batches 40] [--resnet-batches 6] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F

from common import Timer, cifar10_folder
from tune_pipeline.augment import TransformContext, load_transform_script
from tune_pipeline.data import load_imagefolder
from tune_pipeline.models import create_model
from tune_pipeline.train import amp_policy, batches

BATCH = 128  # the original pipeline's batch size


def baseline_loader(folder, workers: int):
    from torchvision import datasets, transforms as T

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    dataset = datasets.ImageFolder(str(folder / "train"), transform=tf)
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                       drop_last=True)


def ours_batches(data, ctx, script):
    order = torch.randperm(len(data.train_labels), generator=ctx.generator)
    for idx in batches(len(order), BATCH, order):
        if len(idx) == BATCH:
            yield script.train_transform(data.train_images[idx], ctx), data.train_labels[idx]


def time_loop(iterator, n: int, step=None) -> float:
    """Images per second over n batches, after two warm-up batches.  The
    iterator is closed afterwards, so no DataLoader worker keeps prefetching
    (and eating a core) while the next measurement runs."""
    for x, y in itertools.islice(iterator, 2):
        if step:
            step(x, y)
    with Timer() as t:
        for x, y in itertools.islice(iterator, n):
            if step:
                step(x, y)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown:
        shutdown()
    return n * BATCH / t.seconds


def make_step(model_name: str, channels_last: bool, amp: bool):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(model_name).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype, _ = amp_policy(torch.device("cpu"), amp, "auto")

    def step(x, y):
        x = x.contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--resnet-batches", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    folder = cifar10_folder()
    with Timer() as t:
        data = load_imagefolder(folder)
    print(f"decode/cache load of {len(data.train_labels) + len(data.test_labels)} images: "
          f"{t.seconds:.1f} s (cache hit: {data.extra['cache_hit']})")
    script = load_transform_script("basic")
    ctx = TransformContext(torch.tensor(data.mean), torch.tensor(data.std), torch.Generator().manual_seed(0))
    loader = baseline_loader(folder, args.workers)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"baseline DataLoader workers: {args.workers}, batch {BATCH}")

    def row(label, ours, base):
        print(f"{label:<44} ours {ours:9.0f} img/s   baseline {base:8.0f} img/s   ratio {ours / base:5.1f}x")

    # All of ours first, then all of the baseline's: DataLoader workers (and
    # the threads they leave behind) slowed whatever ran after them 2-6x.
    ours = {"data": time_loop(ours_batches(data, ctx, script), args.batches * 5)}
    for model, n in (("small_cnn", args.batches), ("resnet18", args.resnet_batches)):
        ours[model] = time_loop(ours_batches(data, ctx, script), n, make_step(model, channels_last=True, amp=True))
    ours_fp32 = time_loop(ours_batches(data, ctx, script), args.batches, make_step("small_cnn", False, False))
    base = {"data": time_loop(iter(loader), args.batches)}
    for model, n in (("small_cnn", args.batches), ("resnet18", args.resnet_batches)):
        base[model] = time_loop(iter(loader), n, make_step(model, channels_last=False, amp=False))

    row("data + augmentation (crop, flip, normalise)", ours["data"], base["data"])
    for model in ("small_cnn", "resnet18"):
        row(f"train step {model} (ours: channels_last, amp auto)", ours[model], base[model])
    print(f"{'  ours, small_cnn, NCHW fp32 (layout effect)':<44} ours {ours_fp32:9.0f} img/s")

if __name__ == "__main__":
    main()
