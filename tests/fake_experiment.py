"""Experiments written straight to disk in Ray Tune's layout, shaped like a
real sweep's, for tests and benchmarks that read an experiment without
running one.

What a reader sees is what a real sweep leaves (`test_fake_is_shaped_like_a_real_sweep`
compares the two): Ray's own `Trial` and run-metadata objects write the
state file's entries (the config twice, the last result, the metric
analysis, the pickled checkpoint manager), every result row carries the
trial's whole config and Ray's bookkeeping keys, configs have every training
key filled in, and Ray's checkpoint manager deletes what its
`CheckpointConfig` does not keep, so the kept `checkpoint_*` folders are the
ones a sweep would keep.  Not written, since no reader opens them:
progress.csv, params.pkl, TensorBoard events, the checkpoints' contents.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from conftest import ROOT

if TYPE_CHECKING:
    from tune_pipeline.experiment import Experiment

SCRIPTS = [str(ROOT / "tune_pipeline" / "transforms" / "runtime_transform_basic.py"),
           str(ROOT / "tune_pipeline" / "transforms" / "runtime_transform_advanced.py")]
QUICKSTART_GRID = {"runtime_transform_script": SCRIPTS, "learning_rate": [0.02, 0.1]}


START = 1_796_000_000  # the rows' clock, as Ray writes timestamps
NODE_ID = "d51728786a01d800c413a1da3e39749af7d3121ce359f99cf0304251"


def full_config(point: dict, epochs: int) -> dict:
    """A trial's config as a sweep gives it: every training key, defaults filled."""
    from tune_pipeline.config import FIELDS

    return {**{k: f.default for k, f in FIELDS.items()}, **point, "epochs": epochs}


def result_row(trial_id: str, config: dict, index: int, epoch: int, epochs: int) -> dict:
    """One row of result.json with the keys, in the order, a sweep's trial writes."""
    quality = (index * 7919 % 97) / 97  # distinct, unordered scores
    accuracy = 0.3 + 0.6 * quality * epoch / epochs
    return {
        "train_loss": 1 - accuracy, "train_accuracy": accuracy + 0.02, "images_per_second": 1500.0 + index % 7,
        "epoch_seconds": 0.1, "val_loss": 1.05 - accuracy, "val_accuracy": accuracy - 0.01, "val_seconds": 0.02,
        "test_loss": 1.1 - accuracy, "test_accuracy": accuracy, "best_train_accuracy": accuracy + 0.02,
        "best_test_accuracy": accuracy, "best_loss": 1 - accuracy, "best_test_loss": 1.1 - accuracy,
        "best_val_accuracy": accuracy - 0.01, "best_val_loss": 1.05 - accuracy, "epoch": epoch,
        "lr": 0.01 / epoch, "node_id": NODE_ID, "compiled": False,
        "timestamp": START + index * 60 + epoch, "checkpoint_dir_name": f"checkpoint_{epoch - 1:06d}",
        "should_checkpoint": True, "done": False, "training_iteration": epoch, "trial_id": trial_id,
        "date": "2026-12-01_14-58-50", "time_this_iter_s": 0.14, "time_total_s": 0.14 * epoch,
        "pid": 9000 + index % 2, "hostname": socket.gethostname(), "node_ip": "192.0.2.2", "config": config,
        "time_since_restore": 0.14 * epoch, "iterations_since_restore": epoch,
    }


def make_experiment(root: Path, grid: dict[str, list], name: str = "fake", epochs: int = 3,
                    statuses: dict[int, tuple[str, int]] | None = None, live: bool = False,
                    keep: int = 2, metric: str = "test_accuracy") -> Path:
    """One trial per point of `grid`, each FINISHED after `epochs` unless
    `statuses` gives its index a (Ray status, epochs reached).  `keep`: the
    CheckpointConfig's num_to_keep, by `metric` (Ray keeps the latest too)."""
    import pyarrow.fs
    from ray.train import Checkpoint, CheckpointConfig
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.storage import StorageContext
    from ray.tune.execution.placement_groups import PlacementGroupFactory
    from ray.tune.experiment import Trial

    from tune_pipeline.internals import forget_metric_analysis
    from tune_pipeline.sweep import trial_dirname

    path = Path(root) / name
    path.mkdir(parents=True)
    keys = list(grid)
    meta = {"name": name, "metric": metric, "mode": "max", "swept": keys, "method": "grid",
            "trial_count": 0, "space": {"parameters": {k: {"values": v} for k, v in grid.items()}}}
    storage = StorageContext(storage_path=str(Path(root)), experiment_dir_name=name,
                             storage_filesystem=pyarrow.fs.LocalFileSystem())
    checkpoints = CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=metric,
                                   checkpoint_score_order="max")
    trial_data = []
    points = list(itertools.product(*grid.values()))
    for index, values in enumerate(points):
        trial_id = f"ab12c_{index:05d}"
        point = dict(zip(keys, values))
        config = full_config(point, epochs)
        status, reached = (statuses or {}).get(index, ("TERMINATED", epochs))
        tag = f"{index}_" + ",".join(f"{k}={v}" for k, v in point.items())
        trial = Trial("train_trial", config=config, trial_id=trial_id, storage=storage, stub=True,
                      evaluated_params=point, experiment_tag=tag,
                      placement_group_factory=PlacementGroupFactory([{"CPU": 1.0}]),
                      checkpoint_config=checkpoints, trial_dirname_creator=trial_dirname)
        trial.relative_logdir = trial.storage.trial_dir_name = trial_dirname(trial)
        trial_dir = path / trial.relative_logdir
        trial_dir.mkdir()
        (trial_dir / "params.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        trial.set_status("RUNNING")
        rows = []
        for epoch in range(1, reached + 1):
            row = result_row(trial_id, config, index, epoch, epochs)
            rows.append(json.dumps(row) + "\n")
            (trial_dir / row["checkpoint_dir_name"]).mkdir()
            trial.update_last_result(dict(row))
            trial.on_checkpoint(_TrainingResult(checkpoint=Checkpoint(str(trial_dir / row["checkpoint_dir_name"])),
                                                metrics=row))
        (trial_dir / "result.json").write_text("".join(rows))
        if status == "ERROR":
            (trial_dir / "error.txt").write_text("Traceback...\ntune_pipeline.errors.RunFailed: loss diverged\n")
            trial.run_metadata.error_filename = "error.txt"
            trial.run_metadata.pickled_error_filename = "error.pkl"
        trial.set_status(status)
        if status in ("TERMINATED", "ERROR"):
            forget_metric_analysis(trial, keep=metric)  # as the sweep's callback does at a trial's end
        trial.run_metadata.invalidate_cache()
        trial_data.append(list(trial.get_json_state()))
    meta["trial_count"] = len(points)
    (path / "tune_pipeline.json").write_text(json.dumps(meta))
    state = {"trial_data": trial_data, "runner_data": {"_metric": metric, "_reuse_actors": True},
             "stats": {"start_time": float(START)}}
    (path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    if live:
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
    from tune_pipeline.experiment_record import ExperimentRecord

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
    record = ExperimentRecord(name=name, metric="val_accuracy", mode="max", method="random", trial_count=count,
                              swept=[k for k in configs[0] if k != "epochs"])
    experiment = Experiment(Path("/nonexistent") / name, record, trials)
    experiment.live = False
    return experiment
