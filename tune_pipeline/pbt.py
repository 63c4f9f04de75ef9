"""Population-based training: what it may change in a running trial, the
`tune.scheduler: {type: pbt, ...}` block, how a new value is drawn, and a
trial's hyperparameter schedule (the values PBT gave it, epoch by epoch).

No Ray here: `pbt_scheduler.py` is the Ray scheduler built from what this
module parses; `train.py` applies a change to the running optimizer.

What a mutation means.  Every `perturbation_interval` epochs, the trials in
the bottom `quantile_fraction` (by the sweep's metric) copy a top trial's
whole state from its exact checkpoint (model, optimizer, scaler, LR schedule,
RNG) and carry on with the top trial's values, some of them changed
(explore): drawn anew from the parameter's own distribution with
`resample_probability`, else moved one step — a neighbouring value for a list
of values, times one of `perturbation_factors` (clipped to the
distribution's range) for a continuous one.

Only keys a running optimizer or loss can take mid-run may be mutated
(MUTABLE).  A mutated learning_rate rescales the LR schedule from that epoch
on: every later step's LR is the schedule's value for the new base rate (a
step decay keeps its decays, one-cycle keeps its shape at a new peak), so the
schedule's shape is kept and its height changes.  Keys that change the
network, the data, the optimizer's kind or the schedule's shape cannot change
mid-run and are refused (REFUSED says why).
"""

from __future__ import annotations

import json
import math
import random

# What a running trial can take, and how train.py applies it.
MUTABLE = {
    "learning_rate": "rescales the running optimizer's LR schedule from that epoch on",
    "momentum": "the running optimizer's momentum (Adam: beta1)",
    "weight_decay": "the running optimizer's weight decay",
    "label_smoothing": "the loss, from the next batch on",
    "grad_clip": "gradient clipping, from the next batch on",
}
_GRAPH = "changes the network or its numerics: a checkpoint of one cannot continue as another"
_DATA = "changes the data the trial trains or is measured on: scores before and after would not compare"
_SHAPE = "shapes the LR schedule over the whole run; a mutated learning_rate rescales the schedule instead"
REFUSED = {
    **dict.fromkeys(("model", "image_size", "channels_last", "amp", "amp_dtype", "compile", "device"), _GRAPH),
    **dict.fromkeys(("dataset", "data_dir", "val_fraction", "val_seed", "max_train_images",
                     "max_test_images", "skip_bad_images", "test_time_flip"), _DATA),
    "runtime_transform_script": "its test transform decides how validation images are seen: "
                                "scores before and after would not compare",
    "batch_size": "changes the steps per epoch that the LR schedule counts",
    "optimizer": "a running optimizer's state (its moments) belongs to its kind",
    "nesterov": "a switch of the optimizer's kind, not a value to perturb",
    **dict.fromkeys(("epochs", "lr_scheduler", "lr_step_size", "lr_gamma", "lr_patience",
                     "warmup_epochs"), _SHAPE),
    "seed": "the trial's random streams travel in its checkpoint; a new seed means nothing mid-run",
    "trial_timeout": "a limit on the run, not a hyperparameter",
}
KEYS = {"type", "perturbation_interval", "burn_in_period", "quantile_fraction", "resample_probability",
        "perturbation_factors", "mutate"}
DEFAULTS = {"perturbation_interval": 2, "burn_in_period": 0, "quantile_fraction": 0.25,
            "resample_probability": 0.25, "perturbation_factors": [1.2, 0.8]}
SCHEDULE_KEY = "hyperparameter_schedule"  # in a trial's results: its lineage's values, epoch by epoch


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse(block: dict, *, params: dict, method: str, population: int, max_epochs: float, where: str,
          problems: list[str]) -> dict:
    """The checked `tune.scheduler` block of type pbt, every problem in `problems`."""
    n = len(problems)
    for key in sorted(map(str, set(block) - KEYS)):
        problems.append(f"{where}{key}: unknown key for pbt; use {', '.join(sorted(KEYS - {'type'}))}")
    s = {**DEFAULTS, **{k: v for k, v in block.items() if k in KEYS}}
    for key, least in (("perturbation_interval", 1), ("burn_in_period", 0)):
        if not (_number(s[key]) and float(s[key]).is_integer() and s[key] >= least):
            problems.append(f"{where}{key}: must be an integer >= {least} (epochs), got {s[key]!r}")
    if not (_number(s["quantile_fraction"]) and 0 < s["quantile_fraction"] <= 0.5):
        problems.append(f"{where}quantile_fraction: must be in (0, 0.5], got {s['quantile_fraction']!r}")
    if not (_number(s["resample_probability"]) and 0 <= s["resample_probability"] <= 1):
        problems.append(f"{where}resample_probability: must be in [0, 1], got {s['resample_probability']!r}")
    factors = s["perturbation_factors"]
    if not (isinstance(factors, list) and factors and all(_number(f) and f > 0 for f in factors)):
        problems.append(f"{where}perturbation_factors: must be a list of numbers > 0, got {factors!r}")
    if method == "bayes":
        problems.append(f"{where}type: pbt chooses each trial's next values itself; it cannot run with "
                        f"method bayes (use random or grid for the starting population)")
    if population < 2:
        problems.append(f"{where}type: pbt needs a population of at least 2 trials, this sweep has "
                        f"{population} (raise tune.num_samples)")
    mutate = _parse_mutate(s.get("mutate"), params, where, problems)
    if len(problems) > n:
        return {"type": "fifo"}
    interval, burn_in = int(s["perturbation_interval"]), int(s["burn_in_period"])
    if max(interval, burn_in) >= max_epochs:
        problems.append(f"{where}perturbation_interval: the first change would come at epoch "
                        f"{max(interval, burn_in)}, but no trial trains more than {max_epochs:g} epochs")
        return {"type": "fifo"}
    return {"type": "pbt", "perturbation_interval": interval, "burn_in_period": burn_in,
            "quantile_fraction": float(s["quantile_fraction"]),
            "resample_probability": float(s["resample_probability"]),
            "perturbation_factors": [float(f) for f in factors], "mutate": mutate, "source": "tune.scheduler"}


def _parse_mutate(mutate, params: dict, where: str, problems: list[str]) -> list[str]:
    if mutate is None:  # every swept key a running trial can take
        chosen = [k for k in params if k in MUTABLE]
        if not chosen:
            swept = ", ".join(params) or "none"
            problems.append(f"{where}mutate: no swept parameter can change mid-run (swept: {swept}); "
                            f"pbt mutates {', '.join(MUTABLE)}: sweep one of them")
        return chosen
    if not (isinstance(mutate, list) and mutate and all(isinstance(k, str) for k in mutate)):
        problems.append(f"{where}mutate: must be a list of swept parameter names, got {mutate!r}")
        return []
    for key in mutate:
        if key not in MUTABLE:
            why = REFUSED.get(key, "not a training key")
            problems.append(f"{where}mutate: {key} cannot change mid-run: {why}")
        elif key not in params:
            problems.append(f"{where}mutate: {key} is not swept: pbt draws its new values from the "
                            f"parameter's distribution (give it values or a distribution)")
    return list(dict.fromkeys(mutate))


def describe(s: dict) -> str:
    """The scheduler in one phrase, as the dry run and the run say it."""
    factors = "/".join(f"{f:g}" for f in s["perturbation_factors"])
    burn = f" after epoch {s['burn_in_period']}" if s["burn_in_period"] else ""
    return (f"pbt (every {s['perturbation_interval']} epochs{burn} the bottom {s['quantile_fraction']:.0%} "
            f"copy a top trial's checkpoint and change {', '.join(s['mutate'])}: redrawn with probability "
            f"{s['resample_probability']:g}, else x{factors} or a neighbouring value)")


# ------------------------------------------------------------ explore

def explore(config: dict, mutate: dict, rng: random.Random, resample_probability: float,
            factors: list[float]) -> tuple[dict, dict]:
    """A copy of `config` with each key of `mutate` (name -> parameters.Param)
    changed as the module docstring says; and what was done to each."""
    from tune_pipeline.config import FIELDS
    from tune_pipeline.sampling import sample

    new, operations = dict(config), {}
    for name, param in mutate.items():
        old = config.get(name)
        if rng.random() < resample_probability or not _number(old):
            new[name], operations[name] = sample(param, rng), "resample"
        elif param.values is not None:
            new[name], operations[name] = _neighbour(param.values, old, rng)
        else:
            factor = rng.choice(factors)
            value = _in_range(param, old * factor)
            new[name], operations[name] = value, f"* {factor:g}"
        if FIELDS[name].kind is int:
            new[name] = int(round(new[name]))
    return new, operations


def _neighbour(values: list, old, rng: random.Random):
    """One step along the sorted values (a list of numbers is an ordered axis)."""
    if not all(_number(v) for v in values):
        return rng.choice(values), "resample"
    ordered = sorted(set(values))
    index = min(range(len(ordered)), key=lambda i: abs(ordered[i] - old))
    step = rng.choice((-1, 1))
    moved = min(max(index + step, 0), len(ordered) - 1)
    return ordered[moved], "shift down" if step < 0 else "shift up"


def _in_range(param, value: float) -> float:
    """A perturbed value inside what the distribution can draw, q-rounded like a draw."""
    record, spec = param.record, param.spec
    lo, hi = record.value_range(spec)
    value = min(max(value, lo), hi)
    if record.quantized:
        value = round(value / spec["q"]) * spec["q"]
        value = min(max(value, lo), hi)
    return value


# ------------------------------------------------------------ schedules

def record_change(schedule: list[dict], epoch: int, old: dict, new: dict) -> list[dict]:
    """The schedule after the MUTABLE keys changed from `old` to `new` at
    `epoch` (epochs done).  Each segment lists every key that ever changed in
    this lineage: a key changing for the first time was constant before."""
    changed = {k: new[k] for k in MUTABLE if k in new and k in old and new[k] != old[k]}
    if not changed:
        return schedule
    out = [dict(segment) for segment in schedule] or [{"epoch": 0}]
    for key in changed:
        for segment in out:
            segment.setdefault(key, old[key])
    current = {k: v for k, v in out[-1].items() if k != "epoch"}
    segment = {"epoch": epoch, **current, **changed}
    if out[-1]["epoch"] == epoch:  # two changes at one epoch: the later one holds
        out[-1] = segment
    else:
        out.append(segment)
    return out


def schedule_of(row: dict) -> list[dict] | None:
    """The schedule a result row carries (None: its values never changed)."""
    text = row.get(SCHEDULE_KEY) if isinstance(row, dict) else None
    if not isinstance(text, str):
        return None
    try:
        schedule = json.loads(text)
    except ValueError:
        return None
    ok = isinstance(schedule, list) and all(isinstance(s, dict) and isinstance(s.get("epoch"), int)
                                            for s in schedule)
    return schedule if ok and schedule else None


def trial_schedule(history: list[dict], metric: str, mode: str) -> list[dict] | None:
    """The schedule of the epoch a ranking by `metric` selects: the one that
    trained the model the trial is judged by."""
    from tune_pipeline.metrics import best_epoch

    row = best_epoch(history, metric, mode)
    return schedule_of(row) if row is not None else None


def describe_schedule(schedule: list[dict] | None) -> str:
    """`learning_rate 0.01 -> 0.012 (epoch 4) -> 0.0096 (epoch 6)`: one clause
    per key that changed, each change with the epoch (epochs done) it took effect."""
    from tune_pipeline.labels import number

    if not schedule:
        return ""
    clauses = []
    for key in (k for k in schedule[0] if k != "epoch"):
        parts, previous = [number(schedule[0][key])], schedule[0][key]
        for segment in schedule[1:]:
            if segment.get(key) != previous:
                parts.append(f"{number(segment[key])} (epoch {segment['epoch']})")
                previous = segment[key]
        if len(parts) > 1:
            clauses.append(f"{key} " + " -> ".join(parts))
    return "; ".join(clauses)


def is_pbt(record) -> bool:
    """Whether an experiment's record (experiment_record.py) says its sweep ran under PBT."""
    return record.scheduler_type == "pbt"


def start_of(schedule: list[dict]) -> dict:
    """The values the schedule starts from (epoch 0)."""
    return {k: v for k, v in schedule[0].items() if k != "epoch"}
