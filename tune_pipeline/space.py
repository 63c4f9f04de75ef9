"""Search spaces: reading a wandb-format sweep file with wandb's meaning,
validating all of it at once, and building the Ray Tune objects it runs as.

The file format is wandb's sweep configuration, so existing sweep files run
unchanged; wandb keys with no meaning here are listed as ignored, and our own
Tune settings live in one `tune:` block (wandb has no such key), which also
maps a file's own parameter names to training keys (`tune.rename`), so a real
wandb file runs with nothing changed but that block.  What each distribution
means comes from `distributions.py`; the order of grid and finite random
trials from `points.py`; wandb's hyperband rule from `hyperband.py`.
Validation ends by building the real search space, searcher and scheduler
(`to_tune`), so anything Ray or Optuna would refuse is refused here, before a
folder or Ray exists.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tune_pipeline.config import (DATASET_DEFAULTS, FIELDS, PATH_KEYS, Switch, check_transform_script,
                                  check_value, default_for, parse_set_option, path_bases, read_yaml,
                                  resolve_path, resolve_script, suggest)
from tune_pipeline.distributions import DISTRIBUTIONS, SPEC_KEYS, bayes_domain, integral
from tune_pipeline import retention
from tune_pipeline.errors import UserError
from tune_pipeline.metrics import REPORTED_METRICS, VALIDATION_METRICS, default_metric
from tune_pipeline.pbt import KEYS as PBT_KEYS
from tune_pipeline.points import Axis, grid_points, random_points

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
HYPERBAND_KEYS = {"type", "min_iter", "max_iter", "eta", "s", "strict"}
SCHEDULER_KEYS = {"type", "grace_period", "max_t", "reduction_factor"}
MAX_GRID_AXIS = 10_000
# Beyond this many points Ray Tune keeps no resumable search state (basic_variant's
# SERIALIZATION_THRESHOLD): such a grid runs as Ray's own grid_search, in Ray's order.
MAX_LISTED_POINTS = 1_000_000
# wandb's parameter names (schema.json, definitions.parameters.propertyNames).
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Keys whose values change the graphs torch.compile builds (see trials_per_graph).
GRAPH_KEYS = ("model", "dataset", "image_size", "batch_size", "channels_last", "amp", "amp_dtype", "device")
REPEAT_KEY = "seed"  # grid repeats differ by this key, one value per repeat


@dataclass
class Param:
    name: str
    distribution: str
    spec: dict                           # the distribution's keys, checked (values made absolute)
    values: list | None = None           # a grid axis (enumerated) or a categorical's values
    origin: tuple = ()                   # the file's name for it (a path when nested): wandb's grid order

    @property
    def record(self):
        return DISTRIBUTIONS[self.distribution]


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
        count = self.trial_count()
        for key in GRAPH_KEYS:
            if key in self.params:
                values = self.params[key].values
                count //= len(values) if values else count
        return max(1, count)

    @property
    def repeats(self) -> int:
        return self.num_samples if self.method == "grid" else 1

    def swept(self) -> list[str]:
        return list(self.params) + ([REPEAT_KEY] if self.repeats > 1 else [])

    def max_epochs(self) -> float:
        return _max_epochs(self.fixed, self.params)

    def resolved(self) -> dict:
        """This space as a sweep file with every path absolute and every default
        filled in: what `tune resume` rebuilds the space from, from any folder."""
        parameters = {k: {"value": v} for k, v in self.fixed.items()}
        for name, p in self.params.items():
            if self.method == "grid":
                parameters[name] = {"values": list(p.values)}
            else:
                parameters[name] = {"distribution": p.distribution, **p.spec}
        metric = {"name": self.metric, "goal": "maximize" if self.mode == "max" else "minimize"}
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


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_path_value(key: str, value: str, bases: list[Path] | None) -> tuple[str, str | None]:
    if bases is None:  # parse_space(check_paths=False): recorded values, taken as given
        return value, None
    if key == "runtime_transform_script":
        script = resolve_script(value, bases)
        return script, check_transform_script(script)
    return str(resolve_path(value, bases)), None


def _check_param_value(key: str, value, where: str, bases: list[Path], problems: list[str]):
    value, problem = check_value(key, value)
    if problem is None and key in PATH_KEYS:
        value, problem = _check_path_value(key, value, bases)
    if problem:
        problems.append(f"{where}: {problem}")
    return value


def _infer_distribution(spec: dict) -> str | None:
    """wandb's rules when `distribution` is not given."""
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:
        ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    return None


def _parse_param(key, spec, where: str, method: str, bases: list[Path], problems: list[str],
                 notes: list[str]) -> Param | tuple[str, Any] | None:
    """One parameter of training key `key` (names are mapped already: _apply_rename)."""
    if not isinstance(spec, dict):
        problems.append(f"{where}: expected a mapping with values, value or distribution, got {spec!r}")
        return None
    for extra in sorted(map(str, set(spec) - SPEC_KEYS)):
        problems.append(f"{where}.{extra}: unknown key{suggest(extra, SPEC_KEYS)}")
    distribution = spec.get("distribution")
    if distribution is None:
        distribution = _infer_distribution(spec)
        if distribution is None:
            problems.append(f"{where}: needs values, value, or a distribution with its bounds")
            return None
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        problems.append(f"{where}.distribution: unknown distribution {distribution!r}"
                        f"{suggest(str(distribution), DISTRIBUTIONS)}")
        return None
    record = DISTRIBUTIONS[distribution]
    for extra in sorted(set(spec) & SPEC_KEYS - set(record.keys) - {"distribution"}):
        hint = (" (use distribution categorical_w_probabilities, or no distribution)"
                if extra == "probabilities" else f" (its keys: {', '.join(record.keys)})")
        problems.append(f"{where}.{extra}: {distribution} takes no {extra}{hint}")
        return None
    if distribution == "constant":
        if "value" not in spec:
            problems.append(f"{where}: constant needs value")
            return None
        value_where = where if where.startswith("--set") else f"{where}.value"
        return (key, _check_param_value(key, spec["value"], value_where, bases, problems))
    if distribution.startswith("categorical"):
        return _parse_categorical(key, spec, where, method, bases, problems, notes, distribution)
    return _parse_numeric(key, spec, where, method, bases, problems, notes, record)


def _distinct(values: list, where: str, notes: list[str]) -> list:
    """A grid runs each distinct point once, as wandb's does (its yaml_hash also
    makes 3000000 and 3000000.0 one value; values here are of the key's type)."""
    out = list(dict.fromkeys(values))
    if len(out) < len(values):
        repeated = sorted({_fmt(v) for v in out if values.count(v) > 1})
        notes.append(f"{where}: {', '.join(repeated)} listed more than once: each grid point runs once, "
                     f"as in wandb")
    return out


def _parse_categorical(key, spec, where, method, bases, problems, notes, distribution) -> Param | None:
    values = spec.get("values")
    if not isinstance(values, list) or not values:
        problems.append(f"{where}.values: must be a non-empty list, got {values!r}")
        return None
    n = len(problems)
    checked = [_check_param_value(key, v, f"{where}.values[{i}]", bases, problems)
               for i, v in enumerate(values)]
    out = {"values": checked}
    if distribution == "categorical_w_probabilities":
        probs = spec.get("probabilities") if isinstance(spec.get("probabilities"), list) else None
        if method == "grid":
            problems.append(f"{where}.probabilities: method grid runs every value once; probabilities "
                            f"weigh random draws (drop them, or use method random)")
        elif method == "bayes":
            problems.append(f"{where}.probabilities: method bayes (Optuna) cannot weigh values; "
                            f"drop probabilities or use method random")
        elif probs is None or len(probs) != len(values):
            problems.append(f"{where}.probabilities: must be a list of {len(values)} numbers, one per "
                            f"value, got {spec.get('probabilities')!r}")
        elif not all(_is_number(p) and math.isfinite(p) and p >= 0 for p in probs):
            problems.append(f"{where}.probabilities: must be numbers >= 0, got {spec['probabilities']!r}")
        elif not abs(sum(probs) - 1.0) <= 1e-8 + 1e-5:  # numpy.isclose's tolerance, as wandb's check
            problems.append(f"{where}.probabilities: must sum to 1, they sum to {sum(probs):g}")
        else:
            out["probabilities"] = [float(p) for p in probs]
    if len(problems) > n:
        return None
    if method == "grid":
        checked = out["values"] = _distinct(checked, where, notes)
    if distribution == "categorical" or len(checked) > 1:
        return Param(key, distribution, out, values=checked)
    return Param(key, "categorical", {"values": checked}, values=checked)


def _parse_numeric(key, spec, where, method, bases, problems, notes, record) -> Param | None:
    kind = FIELDS[key].kind
    if kind not in (int, float):
        values = "true, false or auto" if kind is Switch else f"{kind.__name__}"
        problems.append(f"{where}: distribution {record.name} needs a numeric key; {key} takes "
                        f"{values} values")
        return None
    b: dict = {}
    for name, default in record.keys.items():
        value = _number(spec.get(name, default))
        if value is None:
            problems.append(f"{where}: distribution {record.name} needs {name}")
            return None
        if not _is_number(value) or not math.isfinite(value):
            problems.append(f"{where}.{name}: must be a finite number, got {value!r}")
            return None
        b[name] = value
    before = len(problems)
    if "min" in b and b["min"] >= b["max"]:
        problems.append(f"{where}: min {_fmt(b['min'])} is not less than max {_fmt(b['max'])} (wandb "
                        f"refuses min >= max; for one value write value: {_fmt(b['min'])})")
    if record.name == "int_uniform" and not all(isinstance(b[k], int) for k in ("min", "max")):
        problems.append(f"{where}: int_uniform needs integer min and max, got {b['min']!r} and "
                        f"{b['max']!r} (wandb refuses 16.0 for 16; use uniform for real numbers)")
    if record.name.endswith("_values") and min(b["min"], b["max"]) <= 0:
        problems.append(f"{where}: {record.name} needs min and max > 0 (log scale), got min {_fmt(b['min'])}")
    if b.get("sigma", 0) < 0 or b.get("q", 1) <= 0 or min(b.get("a", 1), b.get("b", 1)) <= 0:
        problems.append(f"{where}: sigma must be >= 0, q, a and b > 0")
    if "mu" in b and "log" in record.name and b["mu"] + 10 * b["sigma"] > 700:
        problems.append(f"{where}: exp(mu + 10 sigma) overflows a float; log_normal's mu and sigma are "
                        f"those of log(x)")
    if len(problems) > before:
        return None
    if record.deprecated:
        lo, hi = record.value_range(b)
        notes.append(f"{where}: {record.name}'s min and max are base-e exponents (values {lo:.3g} to "
                     f"{hi:.3g}); wandb warns about this: {record.name}_values takes the values themselves")
    if kind is int and not integral(record, b):
        problems.append(f"{where}: {key} is an integer; use values, int_uniform, or a q_ distribution "
                        f"with an integer q")
        return None
    lo, hi = record.value_range(b)
    if record.bounds != "none" and not (math.isfinite(lo) and math.isfinite(hi)):
        problems.append(f"{where}: {record.name}'s bounds are natural-log exponents: exp of min "
                        f"{_fmt(b['min'])} or max {_fmt(b['max'])} overflows a float (for the values "
                        f"themselves use {record.name}_values)")
        return None
    for end in (lo, hi):  # the key's own check on what the distribution can produce
        problem = FIELDS[key].check(end)
        if problem:
            problems.append(f"{where}: {record.name} with {_describe(b)} draws values in "
                            f"[{_fmt(lo)}, {_fmt(hi)}]; {key} {problem}")
            return None
    if method == "grid":
        if record.grid is None:
            problems.append(f"{where}: method grid cannot enumerate {record.name}; use values, value, "
                            f"int_uniform or q_uniform")
            return None
        grid = record.grid(b)
        if not grid or len(grid) > MAX_GRID_AXIS:
            size = f"more than {MAX_GRID_AXIS}" if grid else "no"
            problems.append(f"{where}: {record.name} with {_describe(b)} gives a grid axis of {size} values")
            return None
        values = [_check_param_value(key, v, f"{where} (grid value {_fmt(v)})", bases, problems)
                  for v in grid]
        return Param(key, record.name, b, values=_distinct(values, where, notes))
    if method == "bayes" and (record.bayes is None or record.bayes(b) is None):
        why = ("min and max must be multiples of q" if record.name == "q_uniform"
               else "Optuna takes uniform, log-uniform, integer and categorical ranges only")
        problems.append(f"{where}: method bayes (Optuna) cannot search {record.name} ({why}); use "
                        f"method random, or values, uniform, int_uniform, log_uniform_values")
        return None
    return Param(key, record.name, b)


def _describe(b: dict) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in b.items())


def _positive_int(block: dict, key: str, where: str, problems: list[str], default=None):
    value = block.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{where}{key}: must be an integer >= 1, got {value!r}")
        return default
    return value


def _max_epochs(fixed: dict, params: dict) -> float:
    """The largest `epochs` any trial can have: the one source of ASHA's max_t."""
    if "epochs" not in params:
        epochs = fixed.get("epochs")
        # A bad value is reported where it was read; the scheduler must not trip on it.
        return epochs if _is_number(epochs) and math.isfinite(epochs) else FIELDS["epochs"].default
    p = params["epochs"]
    if p.values is not None:
        return max(v for v in p.values if _is_number(v)) if any(_is_number(v) for v in p.values) else 1
    return p.record.value_range(p.spec)[1]


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


def _parse_rename(tune: dict, src: str, problems: list[str]) -> dict:
    """tune.rename: {a name in the file: a training key (or, for the metric's
    name, a reported metric), or null to leave that parameter out}."""
    rename = tune.get("rename")
    if rename is None:
        return {}
    if not isinstance(rename, dict):
        problems.append(f"{src}: tune.rename: expected a mapping {{name in the file: training key}}, "
                        f"got {rename!r}")
        return {}
    out = {}
    for name, key in rename.items():
        if not isinstance(name, str) or not (key is None or isinstance(key, str)):
            problems.append(f"{src}: tune.rename.{name}: expected name: training_key (or name: null), "
                            f"got {name!r}: {key!r}")
        else:
            out[name] = key
    return out


def _flatten_parameters(parameters: dict, src: str, problems: list[str],
                        prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """(name path, spec) for every parameter; wandb's nested blocks ({parameters: ...})
    give dotted names (optimizer.lr) for tune.rename to map."""
    out = []
    for name, spec in parameters.items():
        path = prefix + (name,)
        where = f"{src}: parameters.{'.'.join(map(str, path))}"
        if not isinstance(name, str):
            hint = " (YAML 1.1 reads on, off, yes, no as booleans: quote it)" if isinstance(name, bool) else ""
            problems.append(f"{where}: a parameter's name must be a string, got {name!r}{hint}")
        elif not PARAMETER_NAME.match(name):
            problems.append(f"{where}: wandb takes parameter names of letters, digits, _ . and -, "
                            f"starting with a letter or _")
        elif isinstance(spec, dict) and "parameters" in spec:
            inner = spec["parameters"]
            if set(spec) != {"parameters"}:
                extra = ", ".join(sorted(map(str, set(spec) - {"parameters"})))
                problems.append(f"{where}: a nested block takes only parameters, not {extra}")
            elif not isinstance(inner, dict) or not inner:
                problems.append(f"{where}.parameters: expected a mapping of at least one parameter, got {inner!r}")
            else:
                out.extend(_flatten_parameters(inner, src, problems, path))
        else:
            out.append((path, spec))
    return out


def _apply_rename(entries: list, rename: dict, metric, src: str, problems: list[str],
                  ignored: list[str]) -> list[tuple[str, Any, str, tuple]]:
    """(training key, spec, where to name it in a message, the file's name path)
    per parameter; names that are no training key and are not mapped are listed
    in one line."""
    out, unmapped, given = [], [], {}
    for path, spec in entries:
        name = ".".join(path)
        where = f"{src}: parameters.{name}"
        key = rename.get(name, name)
        if name in rename:
            if key is None:
                ignored.append(f"parameters.{name} (tune.rename: null)")
                continue
            if key not in FIELDS:
                problems.append(f"{src}: tune.rename.{name}: {key!r} is not a training key{suggest(key, FIELDS)}")
                continue
            where += f" (as {key})"
        elif key not in FIELDS:
            unmapped.append(f"parameters.{name}{suggest(name, FIELDS)}")
            continue
        if key in given:
            problems.append(f"{src}: parameters.{given[key]} and parameters.{name} both give {key}; "
                            f"map one of them elsewhere with tune.rename")
            continue
        given[key] = name
        out.append((key, spec, where, path))
    if unmapped:
        first = unmapped[0].split(" ")[0].removeprefix("parameters.")
        noun = "not a training key" if len(unmapped) == 1 else "not training keys"
        problems.append(f"{src}: {', '.join(unmapped)}: {noun}; map each to one in the tune block "
                        f"(tune: {{rename: {{{first}: <training key>}}}}), or to null to leave it out")
    names = {".".join(path) for path, _ in entries}
    metric_name = metric.get("name") if isinstance(metric, dict) else None
    for name in rename:
        if name not in names and name != metric_name:
            problems.append(f"{src}: tune.rename.{name}: the file has no parameter or metric of that name"
                            f"{suggest(name, names | ({metric_name} if isinstance(metric_name, str) else set()))}")
    return out


def load_space(path: str | Path, overrides: list[str] | None = None, *, scheduler: str | None = None,
               num_samples: int | None = None) -> SearchSpace:
    """Read and validate a sweep file (or a shipped one by name); raise
    UserError listing every problem."""
    path = space_file(path)
    return parse_space(read_yaml(path), path, overrides, scheduler=scheduler, num_samples=num_samples)


def parse_space(raw, path: Path, overrides: list[str] | None = None, *, scheduler: str | None = None,
                num_samples: int | None = None, build: bool = True, check_paths: bool = True) -> SearchSpace:
    """Validate a sweep mapping; relative paths resolve beside `path`.  With
    `build`, the Tune objects are built too, so what Ray would refuse is refused here.
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
    rename = _parse_rename(tune, src, problems)

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
        try:
            import optuna  # noqa: F401
        except ImportError:
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
    entries = _apply_rename(_flatten_parameters(parameters, src, problems), rename, raw.get("metric"),
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
        parsed = _parse_param(key, spec, where, method, bases, problems, notes)
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
                value, problem = _check_path_value(key, value, bases)
                if problem:
                    problems.append(f"{src}: {key} (default): {problem}")
            fixed[key] = value

    _check_selection(raw, src, fixed, params, metric, problems)
    if "metric" not in raw and not _holds_out_validation(fixed, params):
        metric, mode = default_metric(0.0)
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
    sched = _parse_scheduler(raw, tune, scheduler, src, _max_epochs(fixed, params), problems, ignored,
                             notes, params, method, population)
    if problems:
        raise UserError(problems)
    space = SearchSpace(source=path.resolve(), method=method, metric=metric, mode=mode, params=params,
                        fixed=fixed, num_samples=samples, run_cap=run_cap, scheduler=sched,
                        resources=resources, max_concurrent_trials=max_concurrent,
                        name=raw.get("name"), project=raw.get("project"), ignored=ignored, raw=raw,
                        target=target, notes=notes, early_terminate=raw.get("early_terminate"),
                        checkpoints=checkpoints, sample_seed=sample_seed)
    if build:
        check_tune(space)
    return space


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
        return all(_is_number(v) and v > 0 for v in candidates)
    value = fixed.get("val_fraction")
    return _is_number(value) and value > 0


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
        return (*default_metric(0.1), None)  # (test_accuracy when no validation split: parse_space)
    if not isinstance(spec, dict) or "name" not in spec:
        problems.append(f"{src}: metric: expected {{name: ..., goal: maximize|minimize}}")
        return (*default_metric(0.1), None)
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
    elif goal not in ("maximize", "minimize"):
        problems.append(f"{src}: metric.goal: must be maximize or minimize, got {goal!r}")
    target = spec.get("target")
    if target is not None and (not _is_number(target) or not math.isfinite(target)):
        problems.append(f"{src}: metric.target: must be a finite number, got {target!r}")
        target = None
    return name, ("min" if goal == "minimize" else "max"), target


def _parse_resources(tune: dict, src: str, problems: list[str]) -> dict:
    # One CPU (one torch thread, trainable._use_assigned_cpus) per trial packs
    # a trial on every core, which trained more images/s in all than one trial
    # with every core's threads (BENCHMARKS.md, "CPU packing: threads per trial").
    resources = {"cpu": 1.0, "gpu": 0.0}
    res = tune.get("resources", {})
    if not isinstance(res, dict):
        problems.append(f"{src}: tune.resources: expected {{cpu: N, gpu: F}}")
        return resources
    for key, value in res.items():
        if key not in resources:
            problems.append(f"{src}: tune.resources.{key}: unknown resource; use cpu and gpu")
        elif not _is_number(value) or not math.isfinite(value) or value < 0 or (key == "cpu" and value == 0):
            problems.append(f"{src}: tune.resources.{key}: must be a number > 0 (gpu may be 0), got {value!r}")
        else:
            resources[key] = float(value)
    return resources


def hyperband_cut_points(et: dict, max_epochs: float) -> list[int]:
    """The epochs at which wandb's hyperband judges a run (its `bands`), as
    wandb/sweeps hyperband_stopping.py computes them, below the last epoch."""
    eta = et.get("eta", 3)
    if "max_iter" in et and "s" in et:
        band, bands = et["max_iter"], []
        for _ in range(int(et["s"])):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
    else:
        limit = min(et.get("max_iter", math.inf), max_epochs)
        bands, band = [], et["min_iter"]
        while math.isfinite(band) and band < limit + 1 and len(bands) < 100:
            bands.append(int(band))
            band *= eta
    return sorted({b for b in bands if b < max_epochs})


def asha_cut_points(grace_period: int, reduction_factor: float, max_t: float) -> list[int]:
    cuts, t = [], grace_period
    while t < max_t:
        cuts.append(int(t))
        t *= reduction_factor
    return sorted(set(cuts))


def _number_at_least(block: dict, key: str, minimum, where: str, problems: list[str], integer=False,
                     exclusive=False):
    value = block.get(key)
    if (not _is_number(value) or not math.isfinite(value) or value < minimum
            or (exclusive and value == minimum) or (integer and not float(value).is_integer())):
        kind = "an integer" if integer else "a number"
        problems.append(f"{where}{key}: must be {kind} {'>' if exclusive else '>='} {minimum}, got {value!r}")
        return None
    return int(value) if integer else value


NO_EARLY_STOPPING = "--scheduler fifo"  # what a refusal about early stopping offers instead


def _without_cuts(what: str, first, max_epochs: float, source: str, notes: list[str]) -> dict:
    """Every cut point at or after the last epoch: nothing to judge, so no early stopping."""
    notes.append(f"{what}: the first cut point, epoch {first}, is at or after the last epoch "
                 f"({_fmt(max_epochs)}): this sweep runs without early stopping")
    return {"type": "fifo", "source": source}


def _parse_scheduler(raw: dict, tune: dict, flag: str | None, src: str, max_epochs: float,
                     problems: list[str], ignored: list[str], notes: list[str] | None = None,
                     params: dict | None = None, method: str = "random", population: int = 0) -> dict:
    notes = notes if notes is not None else []
    early, explicit = raw.get("early_terminate"), tune.get("scheduler")
    if early is not None and explicit is not None:
        problems.append(f"{src}: give early_terminate (wandb's hyperband) or tune.scheduler, not both")
        return {"type": "fifo"}
    if isinstance(explicit, dict) and explicit.get("type") == "pbt":
        if flag is None:
            from tune_pipeline import pbt
            return pbt.parse(explicit, params=params or {}, method=method, population=population,
                             max_epochs=max_epochs, where=f"{src}: tune.scheduler.", problems=problems)
        explicit = {"type": flag}  # --scheduler asha|fifo replaces the file's pbt
    if flag == "fifo":
        return {"type": "fifo", "source": "--scheduler"}
    wants_asha = (flag == "asha" or early is not None
                  or (isinstance(explicit, dict) and explicit.get("type", "asha") == "asha"))
    if wants_asha and not math.isfinite(max_epochs):
        problems.append(f"{src}: epochs has no largest value, and early stopping needs one (give epochs a "
                        f"largest value, or run without early stopping: {NO_EARLY_STOPPING})")
        return {"type": "fifo"}
    if early is not None:
        return _parse_hyperband(early, src, max_epochs, problems, ignored, notes, as_asha=flag == "asha")
    if explicit is None:
        if flag == "asha":
            explicit = {"type": "asha"}
        else:
            return {"type": "fifo"}
    where = f"{src}: tune.scheduler."
    if not isinstance(explicit, dict) or explicit.get("type", "asha") not in ("asha", "fifo"):
        problems.append(f"{where}type: must be asha, fifo or pbt")
        return {"type": "fifo"}
    for key in sorted(map(str, set(explicit) - SCHEDULER_KEYS)):
        problems.append(f"{where}{key}: unknown key; use type, grace_period, max_t, reduction_factor")
    if explicit.get("type", "asha") == "fifo" and flag is None:
        return {"type": "fifo", "source": "tune.scheduler"}
    s = {"grace_period": 1, "reduction_factor": 3, "max_t": max_epochs, **explicit}
    n = len(problems)
    grace = _number_at_least(s, "grace_period", 1, where, problems, integer=True)
    max_t = _number_at_least(s, "max_t", 1, where, problems, integer=True)
    rf = _number_at_least(s, "reduction_factor", 2, where, problems)
    if len(problems) > n:
        return {"type": "fifo"}
    source = "tune.scheduler" if tune.get("scheduler") is not None else "--scheduler"
    if grace > max_t and "max_t" in explicit:
        problems.append(f"{where}grace_period: {grace} is beyond max_t {max_t}: no trial would ever be "
                        f"judged (lower grace_period, or run without early stopping: {NO_EARLY_STOPPING})")
        return {"type": "fifo"}
    cuts = [t for t in asha_cut_points(grace, rf, max_t) if t < max_epochs]
    if not cuts:
        return _without_cuts(source.removeprefix("tune."), grace, max_epochs, source, notes)
    return {"type": "asha", "grace_period": grace, "max_t": max_t, "reduction_factor": rf,
            "cut_points": cuts, "source": source}


def _parse_hyperband(et, src: str, max_epochs: float, problems: list[str], ignored: list[str],
                     notes: list[str], as_asha: bool = False) -> dict:
    """wandb's hyperband block: wandb's rule (hyperband.WandbHyperband), or, with
    --scheduler asha, Ray's ASHA cutting at the same epochs."""
    where = f"{src}: early_terminate."
    if not isinstance(et, dict) or et.get("type") != "hyperband":
        problems.append(f"{where}type: only hyperband is supported")
        return {"type": "fifo"}
    n = len(problems)
    for key in sorted(map(str, set(et) - HYPERBAND_KEYS)):
        problems.append(f"{where}{key}: unknown key{suggest(key, HYPERBAND_KEYS)}")
    et = {"eta": 3, **et}
    _number_at_least(et, "eta", 1, where, problems, exclusive=True)
    for key in ("min_iter", "max_iter"):
        if key in et:
            _number_at_least(et, key, 1, where, problems, integer=True)
    if "s" in et and _number_at_least(et, "s", 1, where, problems, integer=True) is not None \
            and not isinstance(et["s"], int):
        problems.append(f"{where}s: must be an integer, got {et['s']!r} (wandb's engine cannot run "
                        f"a float s)")
    if "strict" in et and not isinstance(et["strict"], bool):
        problems.append(f"{where}strict: must be true or false, got {et['strict']!r}")
    if "min_iter" not in et and not ("max_iter" in et and "s" in et):
        problems.append(f"{src}: early_terminate: needs min_iter, or max_iter with s (as in wandb)")
    if len(problems) > n:
        return {"type": "fifo"}
    if "s" in et and "max_iter" not in et:
        ignored.append("early_terminate.s (wandb uses s only with max_iter)")
    if as_asha and et.get("strict") is False:
        ignored.append("early_terminate.strict: false (ASHA judges a trial by its value at each cut "
                       "point, as strict: true)")
    cuts = hyperband_cut_points(et, max_epochs)
    if not cuts:
        first = (hyperband_cut_points(et, math.inf) or ["none"])[0]
        return _without_cuts("early_terminate", first, max_epochs, "early_terminate", notes)
    if as_asha:
        return {"type": "asha", "grace_period": cuts[0], "max_t": int(max_epochs),
                "reduction_factor": et["eta"], "cut_points": cuts, "source": "early_terminate"}
    return {"type": "hyperband", "cut_points": cuts, "eta": et["eta"], "strict": et.get("strict", True),
            "max_t": int(max_epochs), "source": "early_terminate"}


def with_scheduler(space: SearchSpace, kind: str | None) -> SearchSpace:
    """`--scheduler asha|fifo` over the file's choice (or the scheduler a sweep
    ran with, on resume); max_t and hyperband's cut points from the same source."""
    if kind is None or kind == space.scheduler["type"]:
        return space
    problems: list[str] = []
    raw = {"early_terminate": space.early_terminate} if space.early_terminate is not None else {}
    space.scheduler = _parse_scheduler(raw, {}, kind, str(space.source), space.max_epochs(), problems, [],
                                       space.notes)
    if problems:
        raise UserError(problems)
    return space


# ------------------------------------------------------------ sampling

def _typed(key: str, value):
    """A drawn value in its training key's type: 80 on a float key is 80.0,
    80.0 on an integer key is 80 (wandb passes the distribution's own type)."""
    kind = FIELDS[key].kind
    if kind is int:
        return int(round(value))
    if kind is float:
        return float(value)
    return value


def sample(param: Param, rng: random.Random):
    """One value of `param`, drawn as wandb draws it, in the key's type."""
    if param.values is not None and param.distribution == "categorical":
        return rng.choice(param.values)
    return _typed(param.name, param.record.sample(param.spec, rng))


def _finite_axis(param: Param) -> Axis | None:
    """The parameter's distinct values with their weights, or None when it draws
    from a continuum (or a quantized range, whose values are not equally likely)."""
    if param.distribution.startswith("categorical"):
        probabilities = param.spec.get("probabilities") or [1.0] * len(param.values)
        weights: dict = {}
        for value, probability in zip(param.values, probabilities):
            weights[value] = weights.get(value, 0.0) + probability  # a value listed twice weighs twice
        kept = [v for v, w in weights.items() if w > 0]
        equal = len({weights[v] for v in kept}) == 1
        return Axis(param.name, kept, None if equal else [weights[v] for v in kept], param.origin)
    if param.distribution == "int_uniform":
        return Axis(param.name, range(int(param.spec["min"]), int(param.spec["max"]) + 1), None, param.origin)
    return None


def finite_axes(space: SearchSpace) -> list[Axis] | None:
    """A random search's swept parameters when every one takes finitely many
    values (so it draws without replacement), else None."""
    if space.method != "random" or not space.params:
        return None
    axes = [_finite_axis(p) for p in space.params.values()]
    return None if any(a is None for a in axes) else axes


def _grid_order(space: SearchSpace):
    axes = [Axis(n, p.values, None, p.origin or (n,)) for n, p in space.params.items()]
    return grid_points(axes, _repeat_axis(space) or None)


def _ray_grid_order(space: SearchSpace):
    """Ray's own grid_search order (its keys sorted, the first varying fastest):
    only for a grid too large to list (MAX_LISTED_POINTS)."""
    axes = {n: p.values for n, p in space.params.items()}
    axes.update(_repeat_axis(space))
    names = sorted(axes, reverse=True)
    return (dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names)))


def trial_points(space: SearchSpace, count: int | None = None) -> list[dict] | None:
    """The swept values of the first `count` trials (default: all), in the order
    the run creates them, where that order is fixed in advance: a grid (wandb's
    order) and a finite random search (without replacement, from sample_seed).
    None where Tune draws as it goes (continuous random, bayes, a huge grid)."""
    if space.method == "grid":
        if space.trial_count() > MAX_LISTED_POINTS:
            return None
        return list(itertools.islice(_grid_order(space), count))
    axes = finite_axes(space)
    if axes is None or space.num_samples > MAX_LISTED_POINTS:
        return None
    points = random_points(axes, space.num_samples, space.sample_seed, take=count)
    return [{k: _typed(k, v) for k, v in point.items()} for point in points]


def preview_configs(space: SearchSpace, count: int = 3, seed: int = 0) -> list[dict]:
    """The first trial configs, as --dry-run shows them: the run's own first
    trials for a grid and a finite random search; draws of the same
    distributions otherwise (Tune's own draws differ)."""
    points = trial_points(space, count)
    if points is None and space.method == "grid":
        points = list(itertools.islice(_ray_grid_order(space), count))
    if points is not None:
        return [{**space.fixed, **point} for point in points]
    rng = random.Random(seed)
    return [{**space.fixed, **{n: sample(p, rng) for n, p in space.params.items()}} for _ in range(count)]


def _repeat_axis(space: SearchSpace) -> dict:
    """A grid repeated N times runs each point with N seeds (recorded in the
    trial config), so repeats measure the spread rather than copy one run."""
    if space.repeats <= 1:
        return {}
    base = space.fixed.get(REPEAT_KEY, 0)
    return {REPEAT_KEY: [base + i for i in range(space.repeats)]}


# ------------------------------------------------------------ Ray Tune

def _wandb_draw(param: Param):
    """A Ray Tune domain that draws `param` with wandb's sampler.

    A Domain, not `tune.sample_from(fn)`: Tune swaps a function for a
    placeholder in the search state it saves, and `Tuner.restore` cannot
    bring the function back for trials created after a resume (they got
    `('__fn_ph', ...)` as values); re-supplying it as `param_space` makes Ray
    draw again for every restored trial, finished ones included.  A Domain
    is saved with the searcher, as Tune's own distributions are."""
    from ray.tune.search.sample import Domain

    class WandbDraw(Domain):
        def __init__(self, param: Param):
            self.param = param

        def sample(self, config=None, size: int = 1, random_state=None):
            rng = random.Random()
            values = [sample(self.param, rng) for _ in range(size)]
            return values[0] if size == 1 else values

        def is_valid(self, value) -> bool:
            return True

        @property
        def domain_str(self) -> str:
            return f"{self.param.distribution}({self.param.spec})"

        def __reduce__(self):  # pickled by the function that makes it (the class is local)
            return _wandb_draw, (self.param,)

    return WandbDraw(param)


def _tune_domain(param: Param, method: str):
    from ray import tune

    if method == "grid":
        return tune.grid_search(list(param.values))
    if param.distribution == "categorical":
        return tune.choice(list(param.values))
    if method == "bayes":
        return bayes_domain(param.record, param.spec, FIELDS[param.name].kind is int)
    return _wandb_draw(param)


def _listed_domain(param: Param):
    """What a key holds in param_space when every trial's value is listed in
    advance (points_to_evaluate): the values it may take, as Tune checks them."""
    from ray import tune

    if param.values is not None:
        return tune.choice(list(dict.fromkeys(param.values)))
    return tune.randint(int(param.spec["min"]), int(param.spec["max"]) + 1)  # int_uniform


def to_tune(space: SearchSpace, max_concurrent: int | None = None) -> dict:
    """param_space, search_alg, scheduler, num_samples and max_concurrent_trials
    for a Tuner; `max_concurrent` (default: the file's) bounds running trials."""
    from ray import tune

    limit = max_concurrent or space.max_concurrent_trials

    fixed = {k: v for k, v in space.fixed.items() if not (space.repeats > 1 and k == REPEAT_KEY)}
    search_alg = None
    points = trial_points(space)
    if points is not None:
        # Ray creates trials in this order and saves what is left of it with the
        # experiment, so `tune resume` continues the same sequence.
        from ray.tune.search import BasicVariantGenerator

        param_space = {**fixed, **{n: _listed_domain(p) for n, p in space.params.items()}}
        for name, values in _repeat_axis(space).items():
            param_space[name] = tune.choice(values)
        # Ray ignores TuneConfig's max_concurrent_trials for a generator it is given.
        search_alg = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=limit or 0)
        num_samples = len(points)
    else:
        param_space = {**fixed, **{n: _tune_domain(p, space.method) for n, p in space.params.items()}}
        for name, values in _repeat_axis(space).items():
            param_space[name] = tune.grid_search(values)
        num_samples = 1 if space.method == "grid" else space.num_samples
    if space.method == "bayes":
        from tune_pipeline.searcher import RestartableOptuna
        search_alg = RestartableOptuna()
    scheduler = None
    s = space.scheduler
    if s["type"] == "asha":
        from ray.tune.schedulers import ASHAScheduler
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=int(s["max_t"]),
                                  grace_period=int(s["grace_period"]),
                                  reduction_factor=float(s["reduction_factor"]))
        # The cut points are set, not derived: wandb's (int-truncated, s-limited) bands
        # are not always grace_period * eta^k.
        scheduler._brackets[0]._rungs = [(t, {}) for t in reversed(s["cut_points"])]
    elif s["type"] == "hyperband":
        from tune_pipeline.hyperband import WandbHyperband
        scheduler = WandbHyperband(s["cut_points"], s["eta"], s["strict"])
    elif space.scheduler["type"] == "pbt":
        from tune_pipeline.pbt_scheduler import PbtScheduler
        scheduler = PbtScheduler(space.scheduler, {n: space.params[n] for n in space.scheduler["mutate"]})
    return {"param_space": param_space, "search_alg": search_alg, "scheduler": scheduler,
            "num_samples": num_samples, "max_concurrent_trials": None if points is not None else limit}


def check_tune(space: SearchSpace) -> dict:
    """Build what the run builds, without Ray running: the search space, the
    searcher (given the space, as Tune gives it) and the scheduler."""
    try:
        parts = to_tune(space)
        if parts["search_alg"] is not None:
            import optuna

            verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # a throwaway study: no "created" line
            try:
                parts["search_alg"].set_search_properties(space.metric, space.mode, parts["param_space"])
            finally:
                optuna.logging.set_verbosity(verbosity)
        if parts["scheduler"] is not None:
            parts["scheduler"].set_search_properties(space.metric, space.mode)
    except (AssertionError, ValueError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise UserError(f"{space.source}: Ray Tune refuses this space: {reason}") from None
    return parts
