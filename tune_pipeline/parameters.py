"""wandb's `parameters:` block, one parameter at a time: which distribution a
spec means (wandb's rules when none is given), its keys and bounds checked
against the training key it sets, a grid axis enumerated, and the file's own
names mapped to training keys (`tune.rename`, nested blocks as dotted names).
A parameter becomes a `Param` (it varies between trials) or a fixed value.
What each distribution means comes from `distributions.py`.  No Ray.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_pipeline.config import (FIELDS, PATH_KEYS, Switch, check_transform_script, check_value,
                                  resolve_path, resolve_script, suggest)
from tune_pipeline.distributions import DISTRIBUTIONS, SPEC_KEYS, integral

MAX_GRID_AXIS = 10_000
# wandb's parameter names (schema.json, definitions.parameters.propertyNames).
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


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



def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def as_number(v):
    """wandb files written for YAML 1.1 carry 1e-5 as a string."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_path_value(key: str, value: str, bases: list[Path] | None) -> tuple[str, str | None]:
    if bases is None:  # parse_space(check_paths=False): recorded values, taken as given
        return value, None
    if key == "runtime_transform_script":
        script = resolve_script(value, bases)
        return script, check_transform_script(script)
    return str(resolve_path(value, bases)), None


def _check_param_value(key: str, value, where: str, bases: list[Path], problems: list[str]):
    value, problem = check_value(key, value)
    if problem is None and key in PATH_KEYS:
        value, problem = check_path_value(key, value, bases)
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


def parse_param(key, spec, where: str, method: str, bases: list[Path], problems: list[str],
                notes: list[str]) -> Param | tuple[str, Any] | None:
    """One parameter of training key `key` (names are mapped already: apply_rename)."""
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
    if record.constant:
        if "value" not in spec:
            problems.append(f"{where}: constant needs value")
            return None
        value_where = where if where.startswith("--set") else f"{where}.value"
        return (key, _check_param_value(key, spec["value"], value_where, bases, problems))
    if record.categorical:
        return _parse_categorical(key, spec, where, method, bases, problems, notes, distribution)
    return _parse_numeric(key, spec, where, method, bases, problems, notes, record)


def _distinct(values: list, where: str, notes: list[str]) -> list:
    """A grid runs each distinct point once, as wandb's does (its yaml_hash also
    makes 3000000 and 3000000.0 one value; values here are of the key's type)."""
    out = list(dict.fromkeys(values))
    if len(out) < len(values):
        repeated = sorted({fmt(v) for v in out if values.count(v) > 1})
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
    weighted = DISTRIBUTIONS[distribution].weighted
    if weighted:
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
        elif not all(is_number(p) and math.isfinite(p) and p >= 0 for p in probs):
            problems.append(f"{where}.probabilities: must be numbers >= 0, got {spec['probabilities']!r}")
        elif not abs(sum(probs) - 1.0) <= 1e-8 + 1e-5:  # numpy.isclose's tolerance, as wandb's check
            problems.append(f"{where}.probabilities: must sum to 1, they sum to {sum(probs):g}")
        else:
            out["probabilities"] = [float(p) for p in probs]
    if len(problems) > n:
        return None
    if method == "grid":
        checked = out["values"] = _distinct(checked, where, notes)
    if not weighted or len(checked) > 1:
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
        value = as_number(spec.get(name, default))
        if value is None:
            problems.append(f"{where}: distribution {record.name} needs {name}")
            return None
        if not is_number(value) or not math.isfinite(value):
            problems.append(f"{where}.{name}: must be a finite number, got {value!r}")
            return None
        b[name] = value
    before = len(problems)
    if "min" in b and b["min"] >= b["max"]:
        problems.append(f"{where}: min {fmt(b['min'])} is not less than max {fmt(b['max'])} (wandb "
                        f"refuses min >= max; for one value write value: {fmt(b['min'])})")
    if record.integral and not all(isinstance(b[k], int) for k in ("min", "max")):
        problems.append(f"{where}: int_uniform needs integer min and max, got {b['min']!r} and "
                        f"{b['max']!r} (wandb refuses 16.0 for 16; use uniform for real numbers)")
    if record.positive and min(b["min"], b["max"]) <= 0:
        problems.append(f"{where}: {record.name} needs min and max > 0 (log scale), "
                        f"got min {fmt(b['min'])} and max {fmt(b['max'])}")
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
                        f"{fmt(b['min'])} or max {fmt(b['max'])} overflows a float (for the values "
                        f"themselves use {record.name}_values)")
        return None
    for end in (lo, hi):  # the key's own check on what the distribution can produce
        problem = FIELDS[key].check(end)
        if problem:
            problems.append(f"{where}: {record.name} with {_describe(b)} draws values in "
                            f"[{fmt(lo)}, {fmt(hi)}]; {key} {problem}")
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
        values = [_check_param_value(key, v, f"{where} (grid value {fmt(v)})", bases, problems)
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
    return ", ".join(f"{k} {fmt(v)}" for k, v in b.items())


def parse_rename(tune: dict, src: str, problems: list[str]) -> dict:
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


def flatten_parameters(parameters: dict, src: str, problems: list[str],
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
                out.extend(flatten_parameters(inner, src, problems, path))
        else:
            out.append((path, spec))
    return out


def apply_rename(entries: list, rename: dict, metric, src: str, problems: list[str],
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
