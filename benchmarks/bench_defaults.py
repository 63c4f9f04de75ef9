"""The defaults where a new user starts: a run with every key at
its default, on the embedded digits (the default dataset), with the digits
defaults (config.DATASET_DEFAULTS) against the general CIFAR-10 recipe's
(the baseline: what an empty config trained before), over a few seeds; then
CIFAR-10 with its defaults for 3 epochs (the general ones, unchanged).

    python benchmarks/bench_defaults.py [--seeds 3] [--cifar /work/data/cifar10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import Timer
from tune_pipeline.config import FIELDS, validate_config
from tune_pipeline.data import load_dataset
from tune_pipeline.train import fit

GENERAL = {key: FIELDS[key].default for key in ("batch_size", "learning_rate")}


def run(config: dict, dataset=None) -> tuple[dict, float]:
    with Timer() as t:
        result = fit(validate_config(config), dataset=dataset)
    return result["final"], t.seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cifar", type=Path, default=None, help="the CIFAR-10 image folder (skip if not given)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    digits = load_dataset("digits")
    for label, config in (("digits defaults (empty config)", {}),
                          (f"general defaults on digits {GENERAL} (baseline)", dict(GENERAL))):
        accuracies = []
        for seed in range(args.seeds):
            final, seconds = run({**config, "seed": seed}, digits)
            accuracies.append(final["test_accuracy"])
            print(f"{label}, seed {seed}: test {final['test_accuracy']:.2%}, val {final['val_accuracy']:.2%} "
                  f"({seconds:.1f} s)", flush=True)
        print(f"{label}: mean test accuracy {sum(accuracies) / len(accuracies):.2%}, "
              f"lowest {min(accuracies):.2%}", flush=True)
    if args.cifar is not None:
        final, seconds = run({"model": "small_cnn", "dataset": "imagefolder", "data_dir": str(args.cifar),
                              "epochs": 3})
        print(f"CIFAR-10 defaults, 3 epochs: test {final['test_accuracy']:.2%}, val {final['val_accuracy']:.2%} "
              f"({seconds:.0f} s, decoding included)", flush=True)


if __name__ == "__main__":
    main()
