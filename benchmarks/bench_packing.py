"""CPU packing: aggregate training images/s of one trial with all the cores
against several trials with a core each, as a Ray sweep packs them.

Each trial is its own process that sets `torch.set_num_threads(cpus)` first,
as `trainable._use_assigned_cpus` does, then builds the project's `_Runner`
(train.py) on the shipped defaults (config.py FIELDS: batch 256, amp auto,
channels_last, the basic transform script) and times its
`train_epoch`.  Data: synthetic CIFAR-shaped uint8 images (3x32x32, 10
classes); the step's cost does not depend on the pixels.  Layouts, per model:

    (c) 1 trial  x 1 thread   (scaling reference)
    (a) 1 trial  x 2 threads  (tune.resources.cpu: 2 on 2 cores)
    (b) 2 trials x 1 thread   (tune.resources.cpu: 1 on 2 cores, the default)

    python benchmarks/bench_packing.py [--small-epochs 5] [--resnet-epochs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

BATCH = 256  # config.py FIELDS["batch_size"].default; asserted in the worker
# Images per epoch, a whole number of default batches: small_cnn runs at
# ~900-1800 images/s here, so 4 batches is about a second an epoch at one
# thread; resnet18 at ~50-110, so one batch is 2-5 s.
EPOCH_BATCHES = {"small_cnn": 4, "resnet18": 1}
LAYOUTS = [("c", 1, 1), ("a", 1, 2), ("b", 2, 1)]  # (name, trials, threads per trial)


class _AllDone(Exception):
    """Raised from on_batch to stop a filler epoch once every trial is timed."""


def _trial(model: str, threads: int, images: int, epochs: int, barrier, done, results) -> None:
    import torch

    torch.set_num_threads(threads)  # trainable._use_assigned_cpus, before any work
    from tune_pipeline.config import FIELDS, validate_config
    from tune_pipeline.data import Dataset
    from tune_pipeline.train import _Runner

    assert FIELDS["batch_size"].default == BATCH, "the shipped default batch size changed"
    # epochs: far more than run, so OneCycleLR's schedule never runs out and
    # the LR stays near its low start (random labels must not diverge).
    # val_fraction 0: no validation split, every synthetic image trains.
    cfg = validate_config({"model": model, "device": "cpu", "epochs": 10_000, "val_fraction": 0.0},
                          source="bench")
    g = torch.Generator().manual_seed(0)
    data = Dataset("synthetic", torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=g),
                   torch.randint(0, 10, (images,), generator=g),
                   torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=g),
                   torch.randint(0, 10, (BATCH,), generator=g),
                   [str(i) for i in range(10)], (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    runner = _Runner(cfg, data)
    runner.train_epoch(None)  # warm-up: oneDNN primitives, allocator, first-touch pages
    barrier.wait()  # every trial of the layout starts its timed epochs together
    seconds = [runner.train_epoch(None)["epoch_seconds"] for _ in range(epochs)]
    with done.get_lock():
        done.value += 1

    def stop_when_all_done(step, steps):
        if done.value == barrier.parties:
            raise _AllDone

    # Keep the cores as busy as a sweep would until the slowest trial is timed:
    # a trial that stopped early would hand its core to the other one.
    try:
        while done.value < barrier.parties:
            runner.train_epoch(stop_when_all_done)
    except _AllDone:
        pass
    results.put((images * epochs / sum(seconds), str(runner.amp_dtype), runner.memory_format is torch.channels_last))


def run_layout(model: str, trials: int, threads: int, epochs: int) -> list[tuple]:
    ctx = mp.get_context("spawn")  # a fresh interpreter per trial, as Ray's workers
    barrier, done, results = ctx.Barrier(trials), ctx.Value("i", 0), ctx.Queue()
    images = EPOCH_BATCHES[model] * BATCH
    procs = [ctx.Process(target=_trial, args=(model, threads, images, epochs, barrier, done, results))
             for _ in range(trials)]
    for p in procs:
        p.start()
    out = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"{model}: a trial exited with {p.exitcode}")
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small-epochs", type=int, default=5, help="timed epochs per trial, small_cnn")
    parser.add_argument("--resnet-epochs", type=int, default=3, help="timed epochs per trial, resnet18")
    args = parser.parse_args()
    import torch

    start = time.perf_counter()
    print(f"torch {torch.__version__}, {mp.cpu_count()} cores, batch {BATCH}, synthetic 3x32x32 uint8")
    summary = []
    for model, epochs in (("small_cnn", args.small_epochs), ("resnet18", args.resnet_epochs)):
        images = EPOCH_BATCHES[model] * BATCH
        print(f"\n{model}: {epochs} timed epochs of {images} images per trial, after 1 warm-up epoch")
        total = {}
        for name, trials, threads in LAYOUTS:
            out = run_layout(model, trials, threads, epochs)
            total[name] = sum(rate for rate, _, _ in out)
            per = "  ".join(f"{rate:7.1f}" for rate, _, _ in out)
            print(f"  ({name}) {trials} trial(s) x {threads} thread(s): per trial {per:<17} "
                  f"img/s   sum {total[name]:7.1f} img/s   (amp {out[0][1]}, channels_last {out[0][2]})")
        print(f"  (b)/(a) = {total['b'] / total['a']:.2f}   (a)/(c) = {total['a'] / total['c']:.2f}"
              f"   (b)/(c) = {total['b'] / total['c']:.2f}")
        summary.append(f"{model} (b)/(a) {total['b'] / total['a']:.2f}")
    print(f"\n{'; '.join(summary)}   [{time.perf_counter() - start:.0f} s wall]")


if __name__ == "__main__":
    main()
