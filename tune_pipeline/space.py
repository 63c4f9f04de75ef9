"""Search spaces: reading a wandb-format sweep file with wandb's meaning and
validating all of it at once, into a `SearchSpace`, and the resolved form
`tune resume` rebuilds it from.  This module owns the top-level keys, the
metric, the resources and the defaults a space leaves unset; one parameter's
parsing is `parameters.py`, early stopping `early_stopping.py`, the trials a
space yields `sampling.py`.  No Ray: building the Tune objects is
`tune_adapter.py`'s, which the sweep and the dry run call.

The file format is wandb's sweep configuration, so existing sweep files run
unchanged; wandb keys with no meaning here are listed as ignored, and our own
Tune settings live in one `tune:` block (wandb has no such key), which also
maps a file's own parameter names to training keys (`tune.rename`), so a real
wandb file runs with nothing changed but that block.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_pipeline import compile_policy, retention
from tune_pipeline.config import (DATASET_DEFAULTS, FIELDS, PATH_KEYS, REPEAT_KEY, default_for, parse_set_option,
                                  path_bases, read_yaml, suggest)
from tune_pipeline.early_stopping import SCHEDULER_KEYS, max_epochs, parse_scheduler
from tune_pipeline.errors import UserError
from tune_pipeline.metrics import MAX, REPORTED_METRICS, VALIDATION_METRICS, WANDB_GOALS, default_metric, goal_word
from tune_pipeline.parameters import (Param, apply_rename, check_path_value, flatten_parameters, is_number,
                                      parse_param, parse_rename)
from tune_pipeline.pbt import KEYS as PBT_KEYS
from tune_pipeline.resources import DEFAULT_RESOURCES, resource_problem

METHODS = ("grid", "random", "bayes")
# wandb keys that mean nothing here: accepted and listed once as ignored.
WANDB_IGNORED = {
    "program": "wandb's training script", "command": "wandb's agent command line",
    "entity": "wandb's account", "description": "text for wandb's UI",
    "controller": "wandb's local/cloud controller", "job": "a wandb launch job",
    "image_uri": "a wandb launch image", "apiVersion": "wandb's API version", "kind": "wandb's kind",
    "scheduler": "wandb's launch/custom scheduler; ours is tune.scheduler",
    "metrics": "wandb's multi-objective metrics (method custom only)",
}
WANDB_KEYS = {"method", "metric", "parameters", "early_terminate", "run_cap", "name", "project",
              *WANDB_IGNORED}
TUNE_KEYS = {"resources", "max_concurrent_trials", "num_samples", "scheduler", "checkpoints", "rename",
             "method", "sample_seed"}
TOP_LEVEL = WANDB_KEYS | {"tune"}
METRIC_KEYS = {"name", "goal", "target", "impute", "impute_while_running"}


@dataclass
class SearchSpace:
    source: Path
    method: str
    metric: str
    mode: str
    params: dict[str, Param]             # what varies between trials
    fixed: dict[str, Any]                # every other training key (defaults included)
    num_samples: int                     # random/bayes: trials; grid: repeats of the grid
    run_cap: int | None
    scheduler: dict                      # {"type": "asha"|"fifo", grace_period, max_t, reduction_factor, cut_points}
                                         # or {"type": "pbt", ...} (pbt.parse)
    resources: dict                      # {"cpu": float, "gpu": float}
    max_concurrent_trials: int | None
    name: str | None
    project: str | None
    ignored: list[str]
    raw: dict
    target: float | None = None          # metric.target: the sweep stops once a trial reaches it
    notes: list[str] = field(default_factory=list)
    early_terminate: dict | None = None  # as given (resume rebuilds the same cut points)
    checkpoints: dict = field(default_factory=lambda: retention.parse(None, "", []))  # by outcome
    sample_seed: int = 0                 # the order of a finite random search (points.random_points)

    def trial_count(self) -> int:
        if self.method == "grid":
            return math.prod(len(p.values) for p in self.params.values()) * self.repeats
        return self.num_samples

    def trials_per_graph(self) -> int:
        """Trials that compile the same graphs (model, input shape, precision)
        and so can share one compile: what `compile: auto` weighs.  Values of a
        numeric distribution over one of these keys count as all different."""
        return compile_policy.trials_per_graph(self.trial_count(),
                                               {key: p.values for key, p in self.params.items()})

    @property
    def repeats(self) -> int:
        return self.num_samples if self.method == "grid" else 1

    def swept(self) -> list[str]:
        return list(self.params) + ([REPEAT_KEY] if self.repeats > 1 else [])

    def max_epochs(self) -> float:
        return max_epochs(self.fixed, self.params)

    def resolved(self) -> dict:
        """This space as a sweep file with every path absolute and every default
        filled in: what `tune resume` rebuilds the space from, from any folder."""
        parameters = {k: {"value": v} for k, v in self.fixed.items()}
        for name, p in self.params.items():
            if self.method == "grid":
                parameters[name] = {"values": list(p.values)}
            else:
                parameters[name] = {"distribution": p.distribution, **p.spec}
        metric = {"name": self.metric, "goal": goal_word(self.mode)}
        if self.target is not None:
            metric["target"] = self.target
        tune: dict = {"num_samples": self.num_samples, "resources": dict(self.resources),
                      "sample_seed": self.sample_seed}
        if self.max_concurrent_trials:
            tune["max_concurrent_trials"] = self.max_concurrent_trials
        tune["checkpoints"] = dict(self.checkpoints)
        out = {"method": self.method, "metric": metric, "parameters": parameters, "tune": tune}
        if self.scheduler.get("source") == "early_terminate":
            out["early_terminate"] = self.early_terminate
        else:
            tune["scheduler"] = {k: self.scheduler[k] for k in SCHEDULER_KEYS | PBT_KEYS if k in self.scheduler}
        if self.name:
            out["name"] = self.name
        if self.project:
            out["project"] = self.project
        return out


def _positive_int(block: dict, key: str, where: str, problems: list[str], default=None):
    value = block.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{where}{key}: must be an integer >= 1, got {value!r}")
        return default
    return value


def space_file(name: str | Path) -> Path:
    """The file `tune search NAME` runs: a path, or else a shipped example by
    name (`quickstart`, shipped.example_spaces())."""
    from tune_pipeline.shipped import example_space_file, example_spaces

    path = Path(name)
    if path.exists() or "/" in str(name):
        return path
    shipped = example_space_file(str(name))
    if shipped is not None:
        return shipped
    raise UserError(f"{name}: no such file, and no shipped space of that name "
                    f"(shipped: {', '.join(example_spaces())})")

def load_space(path: str | Path, overrides: list[str] | None = None, *, scheduler: str | None = None,
               num_samples: int | None = None) -> SearchSpace:
    """Read and validate a sweep file (or a shipped one by name); raise
    UserError listing every problem."""
    path = space_file(path)
    return parse_space(read_yaml(path), path, overrides, scheduler=scheduler, num_samples=num_samples)


def parse_space(raw, path: Path, overrides: list[str] | None = None, *, scheduler: str | None = None,
                num_samples: int | None = None, check_paths: bool = True) -> SearchSpace:
    """Validate a sweep mapping; relative paths resolve beside `path`.  What
    Ray or Optuna would refuse is `tune_adapter.check_tune`'s to find.
    `check_paths=False` takes path values as given: a resumed sweep's recorded
    space, whose transform scripts run from the recorded text wherever the files are now."""
    src = str(path)
    if not isinstance(raw, dict):
        raise UserError(f"{src}: expected a mapping with method, metric and parameters")
    problems: list[str] = []
    notes: list[str] = []
    bases = path_bases(path) if check_paths else None
    for key in raw:
        if not isinstance(key, str):
            hint = " (YAML 1.1 reads on, off, yes, no as booleans: quote it)" if isinstance(key, bool) else ""
            problems.append(f"{src}: top-level key {key!r} is not a name{hint}")
        elif key in TUNE_KEYS - WANDB_KEYS:
            problems.append(f"{src}: {key}: a Tune setting; put it under tune: (wandb has no {key} key)")
        elif key not in TOP_LEVEL:
            problems.append(f"{src}: {key}: unknown top-level key{suggest(key, TOP_LEVEL)}")
    ignored = [f"{k} ({why})" for k, why in WANDB_IGNORED.items() if k in raw]
    tune = raw.get("tune") or {}
    if not isinstance(tune, dict):
        problems.append(f"{src}: tune: expected a mapping of Tune settings ({', '.join(sorted(TUNE_KEYS))})")
        tune = {}
    for key in sorted(map(str, set(tune) - TUNE_KEYS)):
        problems.append(f"{src}: tune.{key}: unknown key{suggest(key, TUNE_KEYS)}")
    rename = parse_rename(tune, src, problems)

    method, where = raw.get("method"), "method"
    if method is None and tune.get("method") is not None:
        method, where = tune["method"], "tune.method"  # wandb launch files leave it to their scheduler job
    elif method is not None and tune.get("method") is not None:
        problems.append(f"{src}: tune.method: the file names its method already; give it once")
    if method is None:
        problems.append(f"{src}: method: required (grid, random or bayes), as in wandb (a wandb launch "
                        f"file leaves it to its scheduler job: give it as tune.method)")
        method = "random"
    elif method == "custom":
        problems.append(f"{src}: {where}: custom needs wandb's own scheduler; use grid, random or bayes")
        method = "random"
    elif not isinstance(method, str) or method not in METHODS:
        problems.append(f"{src}: {where}: must be one of {', '.join(METHODS)}, got {method!r}")
        method = "random"
    if method == "bayes":
        if importlib.util.find_spec("optuna") is None:  # found, not imported: Optuna is slow to import
            problems.append(f"{src}: method: bayes needs optuna; install it with "
                            f"pip install 'tune-pipeline[bayes]' (or pip install optuna)")

    metric, mode, target = _parse_metric(raw, src, problems, notes, ignored, rename)

    parameters = raw.get("parameters")
    if parameters is None or parameters == {}:
        problems.append(f"{src}: parameters: wandb requires at least one parameter "
                        f"(for example parameters: {{epochs: {{value: 3}}}})")
        parameters = {}
    elif not isinstance(parameters, dict):
        problems.append(f"{src}: parameters: expected a mapping of training keys")
        parameters = {}
    entries = apply_rename(flatten_parameters(parameters, src, problems), rename, raw.get("metric"),
                           src, problems, ignored)
    try:
        set_values = parse_set_option(overrides or [])
    except UserError as exc:
        problems.extend(exc.problems)
        set_values = {}
    for key, value in set_values.items():  # --set pins a parameter (a training key) to one value
        if key not in FIELDS:
            problems.append(f"--set {key}: not a training key{suggest(key, FIELDS)}")
            continue
        entries = [e for e in entries if e[0] != key] + [(key, {"value": value}, f"--set {key}", (key,))]

    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    for key, spec, where, origin in entries:
        parsed = parse_param(key, spec, where, method, bases, problems, notes)
        if isinstance(parsed, Param):
            parsed.origin = origin
            if parsed.values is not None and len(parsed.values) == 1:
                fixed[key] = parsed.values[0]  # one value is no dimension
            else:
                params[key] = parsed
        elif isinstance(parsed, tuple):
            fixed[parsed[0]] = parsed[1]
    defaults_from = _defaults_dataset(fixed, params, notes)
    for key in FIELDS:
        if key not in fixed and key not in params:
            value = default_for(key, defaults_from)
            if key in PATH_KEYS:
                value, problem = check_path_value(key, value, bases)
                if problem:
                    problems.append(f"{src}: {key} (default): {problem}")
            fixed[key] = value

    _check_selection(raw, src, fixed, params, metric, problems)
    if "metric" not in raw and not _holds_out_validation(fixed, params):
        metric, mode = default_metric(held_out=False)
    run_cap = _positive_int(raw, "run_cap", f"{src}: ", problems)
    if run_cap is not None and method == "grid":
        ignored.append("run_cap (grid runs every combination)")
    samples = num_samples or _positive_int(tune, "num_samples", f"{src}: tune.", problems)
    if samples is None:
        samples = 1 if method == "grid" else (run_cap or 10)
    if method == "grid" and samples > 1 and REPEAT_KEY in params:
        problems.append(f"{src}: tune.num_samples {samples} repeats the grid with a new {REPEAT_KEY} per "
                        f"repeat, but {REPEAT_KEY} is swept already: drop one of them")
    max_concurrent = _positive_int(tune, "max_concurrent_trials", f"{src}: tune.", problems)
    sample_seed = tune.get("sample_seed", 0)
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, int) or sample_seed < 0:
        problems.append(f"{src}: tune.sample_seed: must be an integer >= 0, got {sample_seed!r}")
        sample_seed = 0
    resources = _parse_resources(tune, src, problems)
    checkpoints = retention.parse(tune.get("checkpoints"), f"{src}: tune.checkpoints", problems)
    for key in ("name", "project"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            problems.append(f"{src}: {key}: must be a string, got {raw[key]!r}")

    population = (math.prod(len(p.values or [None]) for p in params.values()) * samples
                  if method == "grid" else samples)
    sched = parse_scheduler(raw, tune, scheduler, src, max_epochs(fixed, params), problems, ignored,
                            notes, params, method, population)
    if problems:
        raise UserError(problems)
    return SearchSpace(source=path.resolve(), method=method, metric=metric, mode=mode, params=params,
                       fixed=fixed, num_samples=samples, run_cap=run_cap, scheduler=sched,
                       resources=resources, max_concurrent_trials=max_concurrent,
                       name=raw.get("name"), project=raw.get("project"), ignored=ignored, raw=raw,
                       target=target, notes=notes, early_terminate=raw.get("early_terminate"),
                       checkpoints=checkpoints, sample_seed=sample_seed)


def _defaults_dataset(fixed: dict, params: dict, notes: list[str]):
    """The dataset whose defaults fill the keys a space leaves unset
    (config.DATASET_DEFAULTS): the space's one dataset; a swept one only when
    every value it takes has the same defaults; else None, the general defaults."""
    if "dataset" not in params:
        return fixed.get("dataset", FIELDS["dataset"].default)
    values = params["dataset"].values or []
    if not values:
        return None
    adapted = {v: DATASET_DEFAULTS.get(v, {}) for v in values}
    if len({repr(sorted(d.items())) for d in adapted.values()}) == 1:
        return values[0]
    keys = sorted({k for d in adapted.values() for k in d} - set(fixed) - set(params))
    if keys:
        notes.append(f"dataset is swept: {', '.join(keys)} take their general defaults "
                     f"({', '.join(f'{k} {FIELDS[k].default:g}' for k in keys)}), not each dataset's; "
                     f"set them to choose")
    return None


def _holds_out_validation(fixed: dict, params: dict) -> bool:
    """Whether every trial has a validation split (val_fraction > 0)."""
    if "val_fraction" in params:
        p = params["val_fraction"]
        candidates = p.values if p.values else [p.spec.get("min", 0)]
        return all(is_number(v) and v > 0 for v in candidates)
    value = fixed.get("val_fraction")
    return is_number(value) and value > 0


def _check_selection(raw: dict, src: str, fixed: dict, params: dict, metric: str,
                     problems: list[str]) -> None:
    """A validation metric means nothing in a trial that holds out no validation split."""
    if "metric" in raw and metric in VALIDATION_METRICS and not _holds_out_validation(fixed, params):
        problems.append(f"{src}: metric.name: {metric} needs a validation split, but val_fraction "
                        f"can be 0; set val_fraction > 0 or select on test_accuracy")


def _parse_metric(raw: dict, src: str, problems: list[str], notes: list[str], ignored: list[str],
                  rename: dict):
    spec = raw.get("metric")
    if spec is None:  # wandb needs no metric for grid/random; we rank trials by one
        return (*default_metric(held_out=True), None)  # (test_accuracy when no validation split: parse_space)
    if not isinstance(spec, dict) or "name" not in spec:
        problems.append(f"{src}: metric: expected {{name: ..., goal: maximize|minimize}}")
        return (*default_metric(held_out=True), None)
    for key in sorted(map(str, set(spec) - METRIC_KEYS)):
        problems.append(f"{src}: metric.{key}: unknown key{suggest(key, METRIC_KEYS)}")
    for key in ("impute", "impute_while_running"):
        if key in spec:
            ignored.append(f"metric.{key} (wandb's bayes imputation)")
    name = spec["name"]
    if isinstance(name, str) and name in rename:
        name, where = rename[name], f"{src}: tune.rename.{name}"
    else:
        where = f"{src}: metric.name"
    if not isinstance(name, str) or name not in REPORTED_METRICS:
        hint = f" (or map it in tune.rename: {{{name}: <metric>}})" if where.endswith("metric.name") else ""
        problems.append(f"{where}: {name!r} is not a reported metric{suggest(str(name), REPORTED_METRICS)}; "
                        f"choose one of {', '.join(REPORTED_METRICS)}{hint}")
        name = "test_accuracy"
    goal = spec.get("goal")
    if goal is None:
        goal = "minimize"  # wandb's documented default
        if "accuracy" in name:
            notes.append(f"metric.goal is not given: minimizing {name}, as wandb does; "
                         f"write goal: maximize to maximize it")
    elif not isinstance(goal, str) or goal not in WANDB_GOALS:
        problems.append(f"{src}: metric.goal: must be maximize or minimize, got {goal!r}")
    target = spec.get("target")
    if target is not None and (not is_number(target) or not math.isfinite(target)):
        problems.append(f"{src}: metric.target: must be a finite number, got {target!r}")
        target = None
    return name, WANDB_GOALS.get(goal, MAX) if isinstance(goal, str) else MAX, target


def _parse_resources(tune: dict, src: str, problems: list[str]) -> dict:
    resources = dict(DEFAULT_RESOURCES)
    res = tune.get("resources", {})
    if not isinstance(res, dict):
        problems.append(f"{src}: tune.resources: expected {{cpu: N, gpu: F}}")
        return resources
    for key, value in res.items():
        problem = resource_problem(key, value)
        if problem:
            problems.append(f"{src}: tune.resources.{key}: {problem}")
        else:
            resources[key] = float(value)
    return resources

