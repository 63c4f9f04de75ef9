"""Every metric a run reports, defined once: its name, which way is better,
the data it was measured on, its label and how its value is shown.

The loop, the run folder, export, the live table, status, plots and the
report read these facts from here, so an accuracy is a percentage and a loss
four decimals wherever it appears, and "better" means the same thing to
ASHA, the checkpoint ranking and the tables.

Selection and reporting are kept apart: a sweep chooses its winner on the
validation split (`val_*`) and quotes the test accuracy of the epoch where
its selection metric was best (`test_accuracy_at_best`).  A sweep without a
validation split (`val_fraction: 0`) chooses on test data and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX, MIN = "max", "min"
# When a run reports a metric.
EVERY_EPOCH = "every epoch"
WITH_VALIDATION = "every epoch of a run that holds out a validation split"
AFTER_THE_RUN = "derived after the run from its history"


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str          # MAX or MIN: which way is better
    kind: str          # fraction (shown as %), loss, lr, rate, seconds, count
    split: str | None  # train, val, test, or None (not a measure of fit)
    label: str
    reported: str = EVERY_EPOCH  # EVERY_EPOCH, WITH_VALIDATION or AFTER_THE_RUN

    def format(self, value) -> str:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "-" if value is None else str(value)
        if not math.isfinite(value):
            return str(value)
        if self.kind == "fraction":
            return f"{value:.2%}"
        if self.kind == "loss":
            return f"{value:.4f}"
        if self.kind == "lr":
            return f"{value:.3g}"
        if self.kind == "rate":
            return f"{value:.0f}"
        if self.kind == "seconds":
            return f"{value:.1f} s"
        return f"{int(value)}"


_ALL = (
    Metric("train_loss", MIN, "loss", "train", "train loss"),
    Metric("train_accuracy", MAX, "fraction", "train", "train accuracy"),
    Metric("val_loss", MIN, "loss", "val", "validation loss", WITH_VALIDATION),
    Metric("val_accuracy", MAX, "fraction", "val", "validation accuracy", WITH_VALIDATION),
    Metric("test_loss", MIN, "loss", "test", "test loss"),
    Metric("test_accuracy", MAX, "fraction", "test", "test accuracy"),
    Metric("best_train_accuracy", MAX, "fraction", "train", "best train accuracy"),
    Metric("best_val_accuracy", MAX, "fraction", "val", "best validation accuracy", WITH_VALIDATION),
    Metric("best_test_accuracy", MAX, "fraction", "test", "best test accuracy"),
    Metric("best_loss", MIN, "loss", "train", "best train loss"),
    Metric("best_val_loss", MIN, "loss", "val", "best validation loss", WITH_VALIDATION),
    Metric("best_test_loss", MIN, "loss", "test", "best test loss"),
    Metric("lr", MAX, "lr", None, "learning rate"),
    Metric("epoch", MAX, "count", None, "epoch"),
    Metric("images_per_second", MAX, "rate", None, "images/s"),
    Metric("epoch_seconds", MIN, "seconds", None, "training seconds per epoch"),
    Metric("val_seconds", MIN, "seconds", None, "validation seconds per epoch", WITH_VALIDATION),
    # Derived after the run from its history, never reported per epoch.
    Metric("test_accuracy_at_best", MAX, "fraction", "test",
           "test accuracy at the selected epoch", AFTER_THE_RUN),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
QUOTED = "test_accuracy_at_best"  # the number to quote for a selected trial

# Reported once per epoch; a sweep's metric must be one of them.
REPORTED_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.reported != AFTER_THE_RUN)
# Reported only when the run holds out a validation split.
VALIDATION_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.reported == WITH_VALIDATION)
METRIC_MODES: dict[str, str] = {m.name: m.goal for m in _ALL}
# Wall-clock measures: they differ between two runs of the same config and seed.
TIMING_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.kind in ("rate", "seconds"))

# Each measure's running best, reported beside it (train_loss's is best_loss).
RUNNING_BEST: dict[str, str] = {
    "train_accuracy": "best_train_accuracy", "train_loss": "best_loss",
    "val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss",
    "test_accuracy": "best_test_accuracy", "test_loss": "best_test_loss",
}

# The original pipeline's results table, then what selection on validation adds.
ORIGINAL_COLUMNS = ("best_train_accuracy", "best_test_accuracy", "best_loss", "best_test_loss")
VALIDATION_COLUMNS = ("best_val_accuracy", "best_val_loss")


def goal(name: str) -> str:
    """max or min for a known metric; max for anything else (Ray's extras)."""
    return METRIC_MODES.get(name, MAX)


# Which way is better, stated once: every ranking, running best, target and
# early-stopping sign reads it from these helpers.
WANDB_GOALS = {"maximize": MAX, "minimize": MIN}  # a sweep file's metric.goal


def goal_word(mode: str) -> str:
    """wandb's word for a mode: maximize or minimize."""
    return next(word for word, m in WANDB_GOALS.items() if m == _checked(mode))


def _checked(mode: str) -> str:
    if mode not in (MAX, MIN):
        raise ValueError(f"mode must be {MAX!r} or {MIN!r}, got {mode!r}")
    return mode


def sign(mode: str) -> float:
    """1 when higher is better, -1 when lower is: `sign(mode) * value` grows as a value gets better."""
    return 1.0 if _checked(mode) == MAX else -1.0


def oriented(value: float, mode: str) -> float:
    """A value on a scale where larger is better whatever the mode."""
    return sign(mode) * value


def is_better(value: float, than: float, mode: str) -> bool:
    """Strictly better: a tie keeps the earlier value."""
    return oriented(value, mode) > oriented(than, mode)


def reaches(value: float, target: float, mode: str) -> bool:
    """A value at or beyond its target, in the better direction."""
    return oriented(value, mode) >= oriented(target, mode)


def best_of(values, mode: str):
    """The best of `values` (the first of ties); None is no value."""
    best = None
    for value in values:
        if value is not None and (best is None or is_better(value, best, mode)):
            best = value
    return best


def label(name: str) -> str:
    return METRICS[name].label if name in METRICS else name


def fmt(name: str, value) -> str:
    """A value as it is shown everywhere: accuracies as percentages, losses
    to four decimals."""
    if name in METRICS:
        return METRICS[name].format(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def default_metric(held_out: bool) -> tuple[str, str]:
    """The sweep's metric when its file names none: validation accuracy, or
    test accuracy when no validation split is held out."""
    return ("val_accuracy", MAX) if held_out else ("test_accuracy", MAX)


def selected_on(metric: str) -> str:
    """The data a ranking by `metric` was chosen on, in words."""
    split = METRICS[metric].split if metric in METRICS else None
    return {"val": "validation data", "test": "test data", "train": "training data"}.get(
        split, "a metric that is not a measure of fit")


def selection_note(metric: str) -> str:
    """`selected on test data` must be seen wherever a ranking is shown: the
    winner's test numbers are then optimistic."""
    return f"selected on {selected_on(metric)}"


def best_epoch(history: list[dict], metric: str, mode: str) -> dict | None:
    """The first epoch where `metric` reached its best value (ties keep the
    earlier epoch, as the running bests do)."""
    best = None
    for row in history:
        value = row.get(metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if best is None or is_better(value, best[metric], mode):
            best = row
    return best


def quoted_accuracy(history: list[dict], metric: str, mode: str) -> float | None:
    """The test accuracy of the epoch selected by `metric`: the honest number."""
    row = best_epoch(history, metric, mode)
    return None if row is None else row.get("test_accuracy")
