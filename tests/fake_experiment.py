"""Experiments written straight to disk in Ray Tune's layout (state file,
trial folders with params.json and result.json), for tests that read an
experiment without running one."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from conftest import ROOT

SCRIPTS = [str(ROOT / "transforms" / "runtime_transform_basic.py"),
           str(ROOT / "transforms" / "runtime_transform_advanced.py")]
QUICKSTART_GRID = {"runtime_transform_script": SCRIPTS, "learning_rate": [0.02, 0.1]}


def make_experiment(root: Path, grid: dict[str, list], name: str = "fake", epochs: int = 3,
                    statuses: dict[int, tuple[str, int]] | None = None, live: bool = False) -> Path:
    """One trial per point of `grid`, each FINISHED after `epochs` unless
    `statuses` gives its index a (Ray status, epochs reached)."""
    path = Path(root) / name
    path.mkdir(parents=True)
    keys = list(grid)
    meta = {"name": name, "metric": "test_accuracy", "mode": "max", "swept": keys, "method": "grid",
            "trial_count": 0, "space": {"parameters": {k: {"values": v} for k, v in grid.items()}}}
    trial_data = []
    points = list(itertools.product(*grid.values()))
    for index, values in enumerate(points):
        trial_id = f"ab12c_{index:05d}"
        config = {**dict(zip(keys, values)), "epochs": epochs}
        status, reached = (statuses or {}).get(index, ("TERMINATED", epochs))
        trial_dir = path / f"trial_{trial_id}"
        trial_dir.mkdir()
        (trial_dir / "params.json").write_text(json.dumps(config))
        quality = (index * 7919 % 97) / 97  # distinct, unordered scores
        rows = []
        for epoch in range(1, reached + 1):
            accuracy = 0.3 + 0.6 * quality * epoch / epochs
            rows.append({"trial_id": trial_id, "epoch": epoch, "training_iteration": epoch,
                         "test_accuracy": accuracy, "train_accuracy": accuracy + 0.02,
                         "best_test_accuracy": accuracy, "best_train_accuracy": accuracy + 0.02,
                         "best_loss": 1 - accuracy, "best_test_loss": 1.1 - accuracy, "test_loss": 1.1 - accuracy})
        (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runtime = {}
        if status == "ERROR":
            (trial_dir / "error.txt").write_text("Traceback...\ntune_pipeline.errors.RunFailed: loss diverged\n")
            runtime["error_filename"] = "error.txt"
        info = {"trial_id": trial_id, "status": status, "config": config,
                "relative_logdir": trial_dir.name}
        trial_data.append([json.dumps(info), json.dumps(runtime)])
    meta["trial_count"] = len(points)
    (path / "tune_pipeline.json").write_text(json.dumps(meta))
    (path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    if live:
        import os
        import socket

        from tune_pipeline.lock import LOCK_FILE  # a driver that holds the lock: this process
        (path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    return path


def grid_of(count: int) -> dict[str, list]:
    """A grid of `count` trials over the quickstart's kinds of parameters (144 = 2*3*4*6)."""
    assert count == 144
    return {"runtime_transform_script": SCRIPTS, "optimizer": ["sgd", "adamw", "lamb"],
            "batch_size": [32, 64, 128, 256], "learning_rate": [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 0.01, 0.03]}


def random_search(count: int, epochs: int = 9, seed: int = 0, name: str = "random-search") -> "Experiment":
    """A random search of `count` trials over asha.yaml's kinds of parameters,
    in memory (no files; fast at 5,000 trials): validation accuracy rising
    and levelling off by how good each configuration is, ASHA's cuts at
    epochs 1 and 3 stopping two thirds of the trials at each, and the
    largest adamw learning rates diverging."""
    import math
    import random

    from tune_pipeline.experiment import Experiment, Trial

    rng = random.Random(seed)
    configs, curves = [], []
    for _ in range(count):
        config = {"model": rng.choice(["resnet18", "preact_resnet18", "vgg16"]),
                  "runtime_transform_script": rng.choice(SCRIPTS), "optimizer": rng.choice(["sgd", "adamw"]),
                  "learning_rate": 10 ** rng.uniform(-4, math.log10(0.2)), "momentum": rng.uniform(0.8, 0.99),
                  "weight_decay": 10 ** rng.uniform(-5, -2), "label_smoothing": rng.choice([0.0, 0.1]),
                  "epochs": epochs}
        distance = abs(math.log10(config["learning_rate"]) - math.log10(0.02))  # best near 0.02
        quality = max(0.0, 1 - distance / 2.5) * (0.9 if config["model"] == "vgg16" else 1.0) + rng.gauss(0, 0.05)
        ceiling, pace = 0.15 + 0.75 * min(max(quality, 0.0), 1.0), rng.uniform(1.5, 4)
        curves.append([min(0.99, max(0.05, ceiling * (1 - math.exp(-e / pace)) + rng.gauss(0, 0.01)))
                       for e in range(1, epochs + 1)])
        configs.append(config)
    reached = [epochs] * count
    for cut in (1, 3):  # ASHA, reduction factor 3: the top third at each cut point goes on
        alive = [i for i in range(count) if reached[i] > cut]
        bar = sorted((curves[i][cut - 1] for i in alive), reverse=True)[len(alive) // 3] if alive else 0
        for i in alive:
            if curves[i][cut - 1] < bar:
                reached[i] = cut
    trials = []
    for i, (config, curve) in enumerate(zip(configs, curves)):
        diverged = config["optimizer"] == "adamw" and config["learning_rate"] > 0.1
        last = min(reached[i], 2) if diverged else reached[i]
        history, best = [], 0.0
        for epoch in range(1, last + 1):
            value = curve[epoch - 1] if not (diverged and epoch == last) else 0.1
            best = max(best, value)
            history.append({"epoch": epoch, "val_accuracy": value, "best_val_accuracy": best,
                            "test_accuracy": value - 0.01, "best_test_accuracy": best - 0.01,
                            "train_accuracy": value + 0.02, "best_train_accuracy": best + 0.02,
                            "train_loss": 2 * (1 - value), "best_loss": 2 * (1 - best),
                            "test_loss": 2.1 * (1 - value), "best_test_loss": 2.1 * (1 - best)})
        status = "ERROR" if diverged else "TERMINATED"
        trials.append(Trial(f"ab12c_{i:05d}", status, config, Path("/nonexistent") / name / f"trial_{i:05d}",
                            history, "RunFailed: loss diverged" if diverged else None))
    meta = {"name": name, "metric": "val_accuracy", "mode": "max", "method": "random", "trial_count": count,
            "swept": [k for k in configs[0] if k != "epochs"]}
    experiment = Experiment(Path("/nonexistent") / name, meta, trials)
    experiment.live = False
    return experiment
