"""Early stopping: where a sweep judges its trials and by which rule.  The cut
points of wandb's hyperband (`early_terminate`, as wandb computes its bands) and
of ASHA (`tune.scheduler`, `--scheduler asha`), both below the largest number
of epochs any trial runs (`max_epochs`, the one source of ASHA's max_t); the
parsed scheduler is a plain dict that `tune_adapter.to_tune` builds Ray's
scheduler from.  No Ray.
"""

from __future__ import annotations

import math

from tune_pipeline.config import FIELDS, suggest
from tune_pipeline.parameters import fmt, is_number

HYPERBAND_KEYS = {"type", "min_iter", "max_iter", "eta", "s", "strict"}
SCHEDULER_KEYS = {"type", "grace_period", "max_t", "reduction_factor"}


def max_epochs(fixed: dict, params: dict) -> float:
    """The largest `epochs` any trial can have: the one source of ASHA's max_t."""
    if "epochs" not in params:
        epochs = fixed.get("epochs")
        # A bad value is reported where it was read; the scheduler must not trip on it.
        return epochs if is_number(epochs) and math.isfinite(epochs) else FIELDS["epochs"].default
    p = params["epochs"]
    if p.values is not None:
        return max(v for v in p.values if is_number(v)) if any(is_number(v) for v in p.values) else 1
    return p.record.value_range(p.spec)[1]


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
    if (not is_number(value) or not math.isfinite(value) or value < minimum
            or (exclusive and value == minimum) or (integer and not float(value).is_integer())):
        kind = "an integer" if integer else "a number"
        problems.append(f"{where}{key}: must be {kind} {'>' if exclusive else '>='} {minimum}, got {value!r}")
        return None
    return int(value) if integer else value


NO_EARLY_STOPPING = "--scheduler fifo"  # what a refusal about early stopping offers instead


def _without_cuts(what: str, first, max_epochs: float, source: str, notes: list[str]) -> dict:
    """Every cut point at or after the last epoch: nothing to judge, so no early stopping."""
    notes.append(f"{what}: the first cut point, epoch {first}, is at or after the last epoch "
                 f"({fmt(max_epochs)}): this sweep runs without early stopping")
    return {"type": "fifo", "source": source}


def parse_scheduler(raw: dict, tune: dict, flag: str | None, src: str, max_epochs: float,
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

