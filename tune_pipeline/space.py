"""Search spaces: reading a wandb-format sweep YAML, validating all of it at
once, and mapping it to Ray Tune's search space.

The file format is wandb's sweep configuration, so existing sweep files run
unchanged; Tune-only settings are extra top-level keys.  Nothing here imports
Ray except `to_tune`, which is called only when a sweep starts.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_pipeline.config import (FIELDS, PATH_KEYS, check_transform_script, check_value,
                                  parse_set_option, path_bases, read_yaml, resolve_path, suggest)
from tune_pipeline.errors import UserError
from tune_pipeline.metrics import METRIC_MODES, REPORTED_METRICS, VALIDATION_METRICS, default_metric

METHODS = ("grid", "random", "bayes")
# wandb's distribution names -> the keys each one needs (defaults as wandb's).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),            # bounds are natural-log exponents
    "log_uniform_values": ("min", "max"),     # bounds are the values themselves
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "inv_log_uniform": ("min", "max"),
    "inv_log_uniform_values": ("min", "max"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
    "log_normal": ("mu", "sigma"),
    "q_log_normal": ("mu", "sigma", "q"),
}
LOG_VALUE_DISTRIBUTIONS = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")
BOUNDED = tuple(d for d, keys in DISTRIBUTIONS.items() if "min" in keys)
SPEC_KEYS = {"values", "value", "distribution", "min", "max", "mu", "sigma", "q", "probabilities"}
TOP_LEVEL = {
    # wandb's keys
    "method", "metric", "parameters", "early_terminate", "run_cap", "name", "description",
    "program", "command", "project", "entity",
    # Tune extensions
    "resources", "max_concurrent_trials", "num_samples", "scheduler",
}
IGNORED = ("program", "command", "entity", "description")


@dataclass
class Param:
    name: str
    values: list | None = None          # categorical (grid or choice)
    distribution: str | None = None
    bounds: dict = field(default_factory=dict)  # min, max, mu, sigma, q

    @property
    def log_scale(self) -> bool:
        return bool(self.distribution) and "log" in self.distribution


@dataclass
class SearchSpace:
    source: Path
    method: str
    metric: str
    mode: str
    params: dict[str, Param]             # what varies between trials
    fixed: dict[str, Any]                # every other training key (defaults included)
    num_samples: int
    run_cap: int | None
    scheduler: dict                      # {"type": "asha"|"fifo", grace_period, max_t, reduction_factor}
    resources: dict                      # {"cpu": float, "gpu": float}
    max_concurrent_trials: int | None
    name: str | None
    project: str | None
    ignored: list[str]
    raw: dict

    def trial_count(self) -> int:
        if self.method == "grid":
            return math.prod(len(p.values) for p in self.params.values()) * self.num_samples
        return self.num_samples

    def swept(self) -> list[str]:
        return list(self.params)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v):
    """wandb files written for YAML 1.1 carry 1e-5 as a string."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _check_path_value(key: str, value: str, bases: list[Path]) -> tuple[str, str | None]:
    path = resolve_path(value, bases)
    if key == "runtime_transform_script":
        return str(path), check_transform_script(path)
    return str(path), None


def _check_param_value(key: str, value, where: str, bases: list[Path], problems: list[str]):
    value, problem = check_value(key, value)
    if problem is None and key in PATH_KEYS:
        value, problem = _check_path_value(key, value, bases)
    if problem:
        problems.append(f"{where}: {problem}")
    return value


def _parse_param(key: str, spec, src: str, method: str, bases: list[Path],
                 problems: list[str]) -> Param | tuple[str, Any] | None:
    where = f"{src}: parameters.{key}"
    if key not in FIELDS:
        problems.append(f"{where}: not a training key{suggest(key, FIELDS)}")
        return None
    if not isinstance(spec, dict):
        problems.append(f"{where}: expected a mapping with values, value or distribution")
        return None
    if "parameters" in spec:
        problems.append(f"{where}: nested parameters are not supported")
        return None
    for extra in sorted(set(spec) - SPEC_KEYS):
        problems.append(f"{where}.{extra}: unknown key{suggest(extra, SPEC_KEYS)}")
    distribution = spec.get("distribution")
    if distribution is None:  # wandb infers it
        if "values" in spec:
            distribution = "categorical"
        elif "value" in spec:
            distribution = "constant"
        elif "min" in spec and "max" in spec:
            lo, hi = _number(spec["min"]), _number(spec["max"])
            ints = isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool)
            distribution = "int_uniform" if ints else "uniform"
        else:
            problems.append(f"{where}: needs values, value, or distribution with its bounds")
            return None
    if distribution not in DISTRIBUTIONS:
        problems.append(f"{where}.distribution: unknown distribution {distribution!r}"
                        f"{suggest(str(distribution), DISTRIBUTIONS)}")
        return None
    if distribution == "constant":
        if "value" not in spec:
            problems.append(f"{where}: constant needs value")
            return None
        return (key, _check_param_value(key, spec["value"], f"{where}.value", bases, problems))
    if distribution == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            problems.append(f"{where}.values: must be a non-empty list")
            return None
        checked = [_check_param_value(key, v, f"{where}.values[{i}]", bases, problems)
                   for i, v in enumerate(values)]
        return Param(key, values=checked, distribution="categorical")
    # a numeric distribution
    if method == "grid":
        problems.append(f"{where}: method grid needs values or value, not distribution {distribution}")
        return None
    kind = FIELDS[key].kind
    if kind not in (int, float):
        problems.append(f"{where}: distribution {distribution} needs a numeric key; {key} takes "
                        f"{kind.__name__} values")
        return None
    bounds = {}
    defaults = {"mu": 0.0, "sigma": 1.0, "q": 1.0}
    for name in DISTRIBUTIONS[distribution]:
        value = _number(spec.get(name, defaults.get(name)))
        if value is None:
            problems.append(f"{where}: distribution {distribution} needs {name}")
            return None
        if not _is_number(value) or not math.isfinite(value):
            problems.append(f"{where}.{name}: must be a number, got {value!r}")
            return None
        bounds[name] = value
    ok = True
    if "min" in bounds and bounds["min"] > bounds["max"]:
        problems.append(f"{where}: min {bounds['min']} is greater than max {bounds['max']}")
        ok = False
    if distribution in LOG_VALUE_DISTRIBUTIONS and min(bounds["min"], bounds["max"]) <= 0:
        problems.append(f"{where}: {distribution} needs min and max > 0 (log scale), got "
                        f"min {bounds['min']}")
        ok = False
    if bounds.get("sigma", 1) <= 0 or bounds.get("q", 1) <= 0:
        problems.append(f"{where}: sigma and q must be > 0")
        ok = False
    if kind is int and (distribution not in ("int_uniform", "q_uniform", "q_log_uniform_values")
                        or any(not float(bounds[k]).is_integer() for k in bounds)):
        problems.append(f"{where}: {key} is an integer; use values, int_uniform, or a q_ distribution "
                        f"with integer bounds and q")
        ok = False
    if ok and distribution in BOUNDED and distribution not in ("log_uniform", "q_log_uniform"):
        for name in ("min", "max"):  # the bounds must be legal values of the key themselves
            _, problem = check_value(key, int(bounds[name]) if kind is int else bounds[name])
            if problem:
                problems.append(f"{where}.{name}: {problem}")
                ok = False
    return Param(key, distribution=distribution, bounds=bounds) if ok else None


def _positive_int(raw: dict, key: str, src: str, problems: list[str], default=None):
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{src}: {key}: must be an integer >= 1, got {value!r}")
        return default
    return value


def load_space(path: str | Path, overrides: list[str] | None = None) -> SearchSpace:
    """Read and validate a sweep file; raise UserError listing every problem."""
    path = Path(path)
    return parse_space(read_yaml(path), path, overrides)


def parse_space(raw, path: Path, overrides: list[str] | None = None) -> SearchSpace:
    """Validate a sweep mapping; relative paths resolve beside `path`."""
    src = str(path)
    if not isinstance(raw, dict):
        raise UserError(f"{src}: expected a mapping with method, metric and parameters")
    problems: list[str] = []
    bases = path_bases(path)
    for key in sorted(set(raw) - TOP_LEVEL):
        problems.append(f"{src}: {key}: unknown top-level key{suggest(key, TOP_LEVEL)}")
    ignored = [k for k in IGNORED if k in raw]
    if raw.get("run_cap") is not None and raw.get("method", "grid") == "grid":
        ignored.append("run_cap (grid runs every combination)")

    method = raw.get("method", "grid")
    if method not in METHODS:
        problems.append(f"{src}: method: must be one of {', '.join(METHODS)}, got {method!r}")
        method = "random"
    if method == "bayes":
        try:
            import optuna  # noqa: F401
        except ImportError:
            problems.append(f"{src}: method: bayes needs optuna; install it with "
                            f"pip install 'tune-pipeline[bayes]' (or pip install optuna)")

    metric_spec = raw.get("metric", {"name": "val_accuracy", "goal": "maximize"})
    metric, mode = "val_accuracy", "max"
    if not isinstance(metric_spec, dict) or "name" not in metric_spec:
        problems.append(f"{src}: metric: expected {{name: ..., goal: maximize|minimize}}")
    else:
        metric = metric_spec["name"]
        if metric not in REPORTED_METRICS:
            problems.append(f"{src}: metric.name: {metric!r} is not a reported metric; choose one of "
                            f"{', '.join(REPORTED_METRICS)}")
        goal = metric_spec.get("goal", "minimize" if METRIC_MODES.get(metric) == "min" else "maximize")
        if goal not in ("maximize", "minimize"):
            problems.append(f"{src}: metric.goal: must be maximize or minimize, got {goal!r}")
        mode = "min" if goal == "minimize" else "max"

    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        problems.append(f"{src}: parameters: expected a mapping of training keys")
        parameters = {}
    set_values = parse_set_option(overrides or [])
    for key, value in set_values.items():  # --set pins a parameter to one value
        parameters = {**parameters, key: {"value": value}}

    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    for key, spec in parameters.items():
        parsed = _parse_param(str(key), spec, src, method, bases, problems)
        if isinstance(parsed, Param):
            if len(parsed.values or [None, None]) == 1:
                fixed[key] = parsed.values[0]  # one value is no dimension
            else:
                params[key] = parsed
        elif isinstance(parsed, tuple):
            fixed[parsed[0]] = parsed[1]
    for key, field_ in FIELDS.items():
        if key not in fixed and key not in params:
            value = field_.default
            if key in PATH_KEYS:
                value, problem = _check_path_value(key, value, bases)
                if problem:
                    problems.append(f"{src}: {key} (default): {problem}")
            fixed[key] = value

    _check_selection(raw, src, fixed, params, metric, problems)
    if "metric" not in raw and not _holds_out_validation(fixed, params):
        metric, mode = default_metric(0.0)
    num_samples = _positive_int(raw, "num_samples", src, problems)
    run_cap = _positive_int(raw, "run_cap", src, problems)
    if num_samples is None:
        num_samples = 1 if method == "grid" else (run_cap or 10)
    max_concurrent = _positive_int(raw, "max_concurrent_trials", src, problems)

    resources = {"cpu": 1.0, "gpu": 0.0}
    res = raw.get("resources", {})
    if not isinstance(res, dict):
        problems.append(f"{src}: resources: expected {{cpu: N, gpu: F}}")
        res = {}
    for key, value in res.items():
        if key not in resources:
            problems.append(f"{src}: resources.{key}: unknown resource; use cpu and gpu")
        elif not _is_number(value) or value < 0 or (key == "cpu" and value == 0):
            problems.append(f"{src}: resources.{key}: must be a number > 0 (gpu may be 0), got {value!r}")
        else:
            resources[key] = float(value)

    scheduler = _parse_scheduler(raw, src, fixed, params, problems)
    if problems:
        raise UserError(problems)
    return SearchSpace(source=path.resolve(), method=method, metric=metric, mode=mode, params=params,
                       fixed=fixed, num_samples=num_samples, run_cap=run_cap, scheduler=scheduler,
                       resources=resources, max_concurrent_trials=max_concurrent,
                       name=raw.get("name"), project=raw.get("project"), ignored=ignored, raw=raw)


def _holds_out_validation(fixed: dict, params: dict) -> bool:
    """Whether every trial has a validation split (val_fraction > 0)."""
    if "val_fraction" in params:
        p = params["val_fraction"]
        candidates = p.values if p.values else [p.bounds.get("min", 0)]
        return all(_is_number(v) and v > 0 for v in candidates)
    value = fixed.get("val_fraction")
    return _is_number(value) and value > 0


def _check_selection(raw: dict, src: str, fixed: dict, params: dict, metric: str,
                     problems: list[str]) -> None:
    """A validation metric means nothing in a trial that holds out no validation split."""
    if "metric" in raw and metric in VALIDATION_METRICS and not _holds_out_validation(fixed, params):
        problems.append(f"{src}: metric.name: {metric} needs a validation split, but val_fraction "
                        f"can be 0; set val_fraction > 0 or select on test_accuracy")


def _parse_scheduler(raw: dict, src: str, fixed: dict, params: dict, problems: list[str]) -> dict:
    epochs = fixed.get("epochs")
    if epochs is None and "epochs" in params:
        p = params["epochs"]
        epochs = max(p.values) if p.values else int(p.bounds.get("max", 1))
    scheduler = {"type": "fifo"}
    early = raw.get("early_terminate")
    if early is not None:
        if not isinstance(early, dict) or early.get("type") != "hyperband":
            problems.append(f"{src}: early_terminate.type: only hyperband is supported (run as ASHA)")
        else:
            for key in sorted(set(early) - {"type", "min_iter", "max_iter", "eta", "s", "strict"}):
                problems.append(f"{src}: early_terminate.{key}: unknown key")
            scheduler = {"type": "asha", "grace_period": early.get("min_iter", 1),
                         "reduction_factor": early.get("eta", 3),
                         "max_t": early.get("max_iter", epochs)}
    explicit = raw.get("scheduler")
    if explicit is not None:
        if not isinstance(explicit, dict) or explicit.get("type", "asha") not in ("asha", "fifo"):
            problems.append(f"{src}: scheduler.type: must be asha or fifo")
            return scheduler
        for key in sorted(set(explicit) - {"type", "grace_period", "max_t", "reduction_factor"}):
            problems.append(f"{src}: scheduler.{key}: unknown key; use grace_period, max_t, reduction_factor")
        scheduler = {"type": explicit.get("type", "asha"), **{k: v for k, v in scheduler.items() if k != "type"},
                     **{k: v for k, v in explicit.items() if k != "type"}}
    if scheduler["type"] == "asha":
        scheduler.setdefault("grace_period", 1)
        scheduler.setdefault("reduction_factor", 3)
        if scheduler.get("max_t") is None:
            scheduler["max_t"] = epochs
        for key, minimum in (("grace_period", 1), ("max_t", 1), ("reduction_factor", 2)):
            value = scheduler[key]
            if not _is_number(value) or value < minimum:
                problems.append(f"{src}: scheduler {key}: must be a number >= {minimum}, got {value!r}")
    return scheduler


def with_scheduler(space: SearchSpace, kind: str | None) -> SearchSpace:
    """`--scheduler asha|fifo` from the command line over the file's choice."""
    if kind is None or kind == space.scheduler["type"]:
        return space
    if kind == "fifo":
        space.scheduler = {"type": "fifo"}
    else:
        epochs = space.fixed.get("epochs") or 1
        space.scheduler = {"type": "asha", "grace_period": 1, "reduction_factor": 3, "max_t": epochs}
    return space


# ------------------------------------------------------------ sampling

def _sample(param: Param, rng: random.Random):
    d, b = param.distribution, param.bounds
    if d == "categorical":
        return rng.choice(param.values)
    if d == "int_uniform":
        return rng.randint(int(b["min"]), int(b["max"]))
    if d in ("uniform", "q_uniform"):
        value = rng.uniform(b["min"], b["max"])
    elif d in ("log_uniform", "q_log_uniform"):
        value = math.exp(rng.uniform(b["min"], b["max"]))
    elif d in ("log_uniform_values", "q_log_uniform_values"):
        value = math.exp(rng.uniform(math.log(b["min"]), math.log(b["max"])))
    elif d == "inv_log_uniform":
        value = math.exp(-rng.uniform(b["min"], b["max"]))
    elif d == "inv_log_uniform_values":
        value = 1.0 / math.exp(rng.uniform(math.log(1 / b["max"]), math.log(1 / b["min"])))
    elif d in ("normal", "q_normal"):
        value = rng.gauss(b["mu"], b["sigma"])
    else:  # log_normal, q_log_normal
        value = math.exp(rng.gauss(b["mu"], b["sigma"]))
    if "q" in b:
        value = round(value / b["q"]) * b["q"]
    if FIELDS[param.name].kind is int:
        value = int(round(value))
    return value


def preview_configs(space: SearchSpace, count: int = 3, seed: int = 0) -> list[dict]:
    """The first trial configs, as --dry-run shows them (random draws for
    random/bayes; Tune's own draws differ)."""
    if space.method == "grid":
        names = list(space.params)
        combos = itertools.islice(itertools.product(*(space.params[n].values for n in names)), count)
        return [{**space.fixed, **dict(zip(names, combo))} for combo in combos]
    rng = random.Random(seed)
    return [{**space.fixed, **{n: _sample(p, rng) for n, p in space.params.items()}} for _ in range(count)]


# ------------------------------------------------------------ Ray Tune

def _divisible(bounds: dict, keys) -> bool:
    """Tune's quantized domains insist that their bounds are multiples of q."""
    return all(math.isclose(bounds[k] / bounds["q"], round(bounds[k] / bounds["q"])) for k in keys)


def _tune_domain(param: Param, method: str):
    from ray import tune

    d, b = param.distribution, param.bounds
    if d == "categorical":
        return tune.grid_search(param.values) if method == "grid" else tune.choice(param.values)
    if d == "int_uniform":
        return tune.randint(int(b["min"]), int(b["max"]) + 1)  # wandb's max is inclusive
    if d == "uniform":
        return tune.uniform(b["min"], b["max"])
    if d == "q_uniform" and _divisible(b, ("min", "max")):
        if FIELDS[param.name].kind is int:
            return tune.qrandint(int(b["min"]), int(b["max"]), int(b["q"]))
        return tune.quniform(b["min"], b["max"], b["q"])
    if d == "log_uniform_values":
        return tune.loguniform(b["min"], b["max"])
    if d == "log_uniform":
        return tune.loguniform(math.exp(b["min"]), math.exp(b["max"]))
    if d == "q_log_uniform_values" and _divisible(b, ("min", "max")):
        if FIELDS[param.name].kind is int:
            return tune.qlograndint(int(b["min"]), int(b["max"]), int(b["q"]))
        return tune.qloguniform(b["min"], b["max"], b["q"])
    if d == "normal":
        return tune.randn(b["mu"], b["sigma"])
    if d == "q_normal":
        return tune.qrandn(b["mu"], b["sigma"], b["q"])
    # The rest have no Tune domain (or bounds it refuses): each trial draws
    # with our own sampler, the one --dry-run uses.
    return tune.sample_from(lambda _spec, p=param: _sample(p, random.Random()))


def to_tune(space: SearchSpace) -> dict:
    """param_space, search_alg, scheduler and num_samples for a Tuner."""
    from ray import tune

    param_space = {**space.fixed, **{n: _tune_domain(p, space.method) for n, p in space.params.items()}}
    search_alg = None
    if space.method == "bayes":
        from ray.tune.search.optuna import OptunaSearch
        search_alg = OptunaSearch()
    scheduler = None
    if space.scheduler["type"] == "asha":
        from ray.tune.schedulers import ASHAScheduler
        s = space.scheduler
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=int(s["max_t"]),
                                  grace_period=int(s["grace_period"]),
                                  reduction_factor=float(s["reduction_factor"]))
    del tune
    return {"param_space": param_space, "search_alg": search_alg, "scheduler": scheduler,
            "num_samples": space.num_samples}
