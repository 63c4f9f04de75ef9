"""Replaying a recorded table of learning curves through the project's own
sweep path: the search space read from a sweep file, the searcher and
scheduler `space.to_tune` builds from it, a real Ray Tune `Tuner`, and a
trainable that reports the recorded epochs of its configuration instead of
training.  What a strategy would have found, and for how much compute, in
seconds instead of hours.

The table (benchmarks/data/search_table.csv, see its README) holds, for every
configuration of a grid and each of several training seeds, the metrics of
every epoch.  A replay with seed s gives each configuration one of its
recorded training seeds (chosen by s and the configuration, the same for
every strategy replayed with s), so the spread over replay seeds holds both
the searcher's randomness and training noise.

What is measured: the results in the order the Tuner received them; each
is one trial-epoch (one epoch of one trial).  Stopped trials cost only the
epochs they ran.
"""

from __future__ import annotations

import csv
import math
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import ray.cloudpickle
from ray import tune

# Columns of the table that are not a configuration's axes.
NOT_AXES = {"config_index", "seed", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
            "test_loss", "test_accuracy", "epoch_seconds"}
REPORTED = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
            "epoch_seconds")


def _value(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def normal(value):
    """A configuration value as the table spells it: a transform script by its
    label (`basic` for .../runtime_transform_basic.py), a number as a float."""
    if isinstance(value, str) and value.endswith(".py"):
        return Path(value).stem.removeprefix("runtime_transform_")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


class Table:
    """{configuration: {training seed: [metrics of epoch 1, 2, ...]}}, with the axes' names."""

    def __init__(self, rows: list[dict]):
        if not rows:
            raise ValueError("an empty table")
        self.axes = [c for c in rows[0] if c not in NOT_AXES]
        curves: dict = defaultdict(lambda: defaultdict(list))
        for row in sorted(rows, key=lambda r: (int(r["seed"]), int(r["epoch"]))):
            key = tuple(normal(_value(row[a]) if isinstance(row[a], str) else row[a]) for a in self.axes)
            curves[key][int(row["seed"])].append({m: float(row[m]) for m in REPORTED if m in row})
        self.curves = {k: dict(v) for k, v in curves.items()}

    @classmethod
    def read(cls, path: Path) -> "Table":
        with Path(path).open() as f:
            return cls(list(csv.DictReader(f)))

    def key(self, config: dict) -> tuple:
        return tuple(normal(config[a]) for a in self.axes)

    def curve(self, config: dict, replay_seed: int) -> list[dict]:
        """The recorded epochs this configuration reports in replay `replay_seed`."""
        key = self.key(config)
        seeds = sorted(self.curves[key])
        pick = seeds[zlib.crc32(repr((replay_seed, key)).encode()) % len(seeds)]
        return self.curves[key][pick]


def replay_trial(config: dict, table: Table = None, replay_seed: int = 0) -> None:
    """The replay trainable: the recorded epochs, reported as a trial reports them."""
    for epoch, metrics in enumerate(table.curve(config, replay_seed)[: int(config["epochs"])], 1):
        tune.report({**metrics, "epoch": epoch})


class Recorder(tune.Callback):
    """Keeps every result in the order the Tuner got it (in the driver)."""

    def __init__(self, axes: list[str]):
        self.axes = axes
        self.results: list[dict] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append({"trial_id": trial.trial_id, "epoch": result["epoch"],
                             "val_accuracy": result["val_accuracy"], "test_accuracy": result["test_accuracy"],
                             "epoch_seconds": result.get("epoch_seconds"),
                             **{a: normal(trial.config[a]) for a in self.axes}})


def replay(space_file: Path, table: Table, replay_seed: int, storage: Path, name: str,
           max_concurrent: int = 2, overrides: list[str] | None = None,
           scheduler: str | None = None) -> list[dict]:
    """One sweep of `space_file` (with `--scheduler`'s `scheduler`, `--set`'s
    `overrides`), replayed: every result in arrival order.  Ray must be
    running (one session serves many replays).  `replay_seed` seeds what a
    user seeds to get another run of the same strategy: a finite random
    search's order (`tune.sample_seed`, set in the file's own tune block),
    Optuna's TPE sampler, and numpy's global generator (Ray Tune's own
    random variants)."""
    import numpy as np

    from tune_pipeline.config import read_yaml
    from tune_pipeline.space import parse_space, space_file as find_space
    from tune_pipeline.tune_adapter import to_tune
    from tune_pipeline.sweep import trial_dirname

    path = find_space(space_file)
    raw = read_yaml(path)
    raw["tune"] = {**(raw.get("tune") or {}), "sample_seed": replay_seed}
    space = parse_space(raw, path, overrides, scheduler=scheduler)
    parts = to_tune(space, max_concurrent)  # as sweep.new_tuner builds it
    np.random.seed(replay_seed)
    from ray.tune.search.optuna import OptunaSearch

    if isinstance(parts["search_alg"], OptunaSearch):
        parts["search_alg"]._seed = replay_seed  # OptunaSearch's TPE sampler, made when Tune sets it up
    # Workers cannot import this file (benchmarks/ is no package): send it whole.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    recorder = Recorder(table.axes)
    trainable = tune.with_resources(tune.with_parameters(replay_trial, table=table, replay_seed=replay_seed),
                                    {"cpu": 1})
    tuner = tune.Tuner(
        trainable, param_space=parts["param_space"],
        tune_config=tune.TuneConfig(metric=space.metric, mode=space.mode, search_alg=parts["search_alg"],
                                    scheduler=parts["scheduler"], num_samples=parts["num_samples"],
                                    max_concurrent_trials=parts["max_concurrent_trials"],
                                    trial_dirname_creator=trial_dirname, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), callbacks=[recorder], verbose=0))
    tuner.fit()
    return recorder.results


def anytime(results: list[dict], metric: str = "val_accuracy") -> list[tuple[int, float, float]]:
    """(trial-epochs spent, best `metric` found so far, test accuracy at that
    choice) after each result, as the project selects: the best epoch of any
    trial by `metric`, quoting its test accuracy."""
    out, best, quoted = [], -math.inf, None
    for spent, r in enumerate(results, 1):
        if r[metric] > best:
            best, quoted = r[metric], r["test_accuracy"]
        out.append((spent, best, quoted))
    return out


def repeats(results: list[dict], axes: list[str]) -> dict:
    """How much of a replay went to configurations an earlier trial had
    already started: the table's trials are deterministic per configuration
    (as a real trial with the same seed is), so a repeat learns nothing new."""
    first: dict = {}
    trials, wasted = set(), 0
    for r in results:
        trials.add(r["trial_id"])
        key = tuple(r[a] for a in axes)
        owner = first.setdefault(key, r["trial_id"])
        wasted += owner != r["trial_id"]
    return {"trials": len(trials), "configurations": len(first), "repeat_trial_epochs": wasted}


def steps(curve: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """An anytime curve without the points that change nothing (the best so
    far is a step function): what spent_to_reach and best_at read is kept,
    the first and last points included, so stored curves stay small."""
    return [point for i, point in enumerate(curve)
            if i in (0, len(curve) - 1) or tuple(point[1:]) != tuple(curve[i - 1][1:])]


def spent_to_reach(curve: list[tuple[int, float, float]], target: float) -> float:
    """Trial-epochs until the best so far reached `target` (inf: never)."""
    return next((spent for spent, best, _ in curve if best >= target), math.inf)


def best_at(curve: list[tuple[int, float, float]], budget: float) -> tuple[float, float]:
    """(best metric, its test accuracy) once `budget` trial-epochs were spent
    (or at the end of a sweep that spent less)."""
    within = [c for c in curve if c[0] <= budget] or curve[:1]
    return within[-1][1], within[-1][2]
