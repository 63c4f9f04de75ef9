"""Record the original grid on real CIFAR-10: every configuration's validation
and test accuracy at every epoch, for the search benchmark to replay.

The grid is the original sweep's axes without the model: transform script
(basic, advanced) x optimizer (adam, sgd) x learning rate (0.001, 0.01,
0.005) x momentum (0.9, 0.95) x weight decay (0.0001, 0.001) = 48
configurations, each trained with two seeds, small_cnn, 9 epochs.

Sizes, each chosen for a reason:
- 9 epochs: wandb's hyperband with eta 3 and min_iter 1 judges at epochs 1 and 3
  below it, so the replayed early stopping has two cut points to act at.
- StepLR x0.1 every 3 epochs: the original recipe (x0.1 at epochs 10 and 20 of
  30) scaled to the 9-epoch budget.
- batch 128: the original recipe's.
- 8,000 training images (a fixed random subset of the 45,000 left after the
  10% validation hold-out), 2,000 validation and 2,000 test images: at
  ~2,400 images/s for small_cnn on this 2-core machine (BENCHMARKS.md), 96
  runs x 9 epochs take about an hour, the budget the benchmark was sized to.

Each run's rows are appended to the table as soon as it ends, so an
interrupted recording continues where it stopped.  The accuracies do not
depend on what else runs on the machine; `epoch_seconds` does (this table was
recorded under SCHED_IDLE beside other work, so its seconds are not figures).

    python benchmarks/search_record.py            # -> benchmarks/data/search_table.csv
    chrt -i 0 python benchmarks/search_record.py  # on a shared machine: only idle CPU
"""

from __future__ import annotations

import csv
import itertools
import os
import sys
import time
from pathlib import Path

import torch

from common import ROOT, cifar10_folder

TABLE = ROOT / "benchmarks" / "data" / "search_table.csv"
AXES = {
    "runtime_transform_script": ["basic", "advanced"],
    "optimizer": ["adam", "sgd"],
    "learning_rate": [0.001, 0.01, 0.005],
    "momentum": [0.9, 0.95],
    "weight_decay": [0.0001, 0.001],
}
SEEDS = (0, 1)
FIXED = {
    "model": "small_cnn", "dataset": "imagefolder", "epochs": 9, "batch_size": 128,
    "lr_scheduler": "step", "lr_step_size": 3, "lr_gamma": 0.1,
    "max_train_images": 8000, "max_test_images": 2000, "val_fraction": 0.1,
}
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
           "epoch_seconds")
COLUMNS = ["config_index", "seed", *AXES, "epoch", *METRICS]


def grid() -> list[dict]:
    """The 48 configurations, in the original grid's order (itertools.product of the axes)."""
    return [dict(zip(AXES, values)) for values in itertools.product(*AXES.values())]


def script_path(label: str) -> str:
    return str(ROOT / "transforms" / f"runtime_transform_{label}.py")


def recorded() -> set[tuple[int, int]]:
    if not TABLE.exists():
        return set()
    with TABLE.open() as f:
        rows = list(csv.DictReader(f))
    epochs: dict[tuple[int, int], int] = {}
    for row in rows:
        key = (int(row["config_index"]), int(row["seed"]))
        epochs[key] = epochs.get(key, 0) + 1
    return {key for key, n in epochs.items() if n == FIXED["epochs"]}


def main() -> None:
    from tune_pipeline.config import validate_config
    from tune_pipeline.data import load_dataset
    from tune_pipeline.train import fit

    data_dir = cifar10_folder() if not os.environ.get("CIFAR10_DIR") else Path(os.environ["CIFAR10_DIR"])
    dataset = load_dataset("imagefolder", data_dir)
    done = recorded()
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    new_file = not TABLE.exists()
    todo = [(i, seed, cfg) for seed in SEEDS for i, cfg in enumerate(grid()) if (i, seed) not in done]
    print(f"{len(done)} runs recorded, {len(todo)} to go", flush=True)
    with TABLE.open("a", newline="") as out:
        writer = csv.DictWriter(out, COLUMNS)
        if new_file:
            writer.writeheader()
        for n, (i, seed, cfg) in enumerate(todo, 1):
            config = validate_config({**FIXED, **cfg, "data_dir": str(data_dir), "seed": seed,
                                      "runtime_transform_script": script_path(cfg["runtime_transform_script"])})
            torch.set_num_threads(os.cpu_count() or 1)
            start = time.perf_counter()
            result = fit(config, dataset=dataset)
            seconds = time.perf_counter() - start
            for h in result["history"]:
                writer.writerow({"config_index": i, "seed": seed, **cfg, "epoch": h["epoch"],
                                 **{m: h[m] for m in METRICS}})
            out.flush()
            best = max(h["val_accuracy"] for h in result["history"])
            print(f"[{n}/{len(todo)}] config {i} seed {seed}: best val {best:.2%} in {seconds:.0f} s  {cfg}",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
