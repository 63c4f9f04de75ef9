"""Experiments written straight to disk in Ray Tune's layout (state file,
trial folders with params.json and result.json), for tests that read an
experiment without running one."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from conftest import ROOT

SCRIPTS = [str(ROOT / "tune_pipeline" / "transforms" / "runtime_transform_basic.py"),
           str(ROOT / "tune_pipeline" / "transforms" / "runtime_transform_advanced.py")]
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
