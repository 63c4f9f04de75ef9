"""wandb's hyperband early termination, by wandb's own rule, as a Ray Tune scheduler.

wandb's engine (the `sweeps` package, src/sweeps/hyperband_stopping.py, MIT
licence) stops runs like this, each time its controller looks at the sweep:
for each band (an epoch count), the values every run had at that band — runs
still running, finished or stopped alike — sorted best first give the
threshold at index int(n / eta); every *running* run is then judged at the last
band it has reached, and stops if it is worse than that threshold: its value
at the band with `strict` (wandb's default), its best value so far without.

`runs_to_stop` is that rule and nothing else.  `WandbHyperband` applies it at
every result Ray Tune reports, to every running trial, so a trial that passed
a band can still be stopped there later when better trials arrive, as in
wandb.  (Ray's ASHA judges a trial once, on arrival at a rung, against the
trials recorded there before it: the first to arrive is never stopped.)
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from numbers import Real
from typing import Hashable, Iterable, Mapping, Sequence

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tune_pipeline import metrics
from tune_pipeline.ended_trials import FirstOpenTrial

# Under Ray Tune's logger: the sweep's log settings (quiet unless --verbose) apply.
logger = logging.getLogger("ray.tune.wandb_hyperband")


def _is_number(value) -> bool:
    """wandb's `is_number`: a finite real that is not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


class Bands:
    """wandb's rule over the runs of one sweep, kept up to date a value at a
    time: each run's valid values (negated when the metric is maximized, so
    lower is better), and at each band the sorted values every run had there."""

    def __init__(self, bands: Sequence[int], eta: float, strict: bool = True):
        self.bands = sorted({int(b) for b in bands})  # wandb's list may repeat a band: the same one
        self.r = 1.0 / eta
        self.strict = strict
        self.histories: dict[Hashable, list[float]] = {}  # in the order runs first reported
        self.best: dict[Hashable, float] = {}
        self.order: dict[Hashable, int] = {}
        self.at_band: dict[int, list[float]] = {b: [] for b in self.bands}

    def add(self, key: Hashable, value: float) -> None:
        history = self.histories.setdefault(key, [])
        self.order.setdefault(key, len(self.order))
        history.append(value)
        self.best[key] = min(self.best.get(key, math.inf), value)
        if len(history) in self.at_band:
            bisect.insort(self.at_band[len(history)], value)

    def stops(self, running: Iterable[Hashable]) -> list:
        """The running runs to stop (in the order they first reported), each
        judged at the last band it reached."""
        out = []
        for key in sorted((k for k in set(running) if k in self.histories), key=self.order.__getitem__):
            history = self.histories[key]
            reached = bisect.bisect_right(self.bands, len(history))
            if not reached:
                continue
            band = self.bands[reached - 1]
            values = self.at_band[band]
            threshold = values[int(self.r * len(values))]
            judged = history[band - 1] if self.strict else self.best[key]
            if judged > threshold:
                out.append(key)
        return out


def runs_to_stop(histories: Mapping[Hashable, Sequence], running: Iterable[Hashable], bands: Sequence[int],
                 eta: float, mode: str = "min", strict: bool = True) -> list:
    """The running runs wandb's hyperband stops, in `histories`' order.

    `histories` maps every run of the sweep to its metric values in the order
    logged (invalid values are skipped, as wandb's filter_invalid does);
    `bands` are wandb's epochs; `mode` is "min" or "max"."""
    sign = -metrics.sign(mode)  # wandb negates a maximized metric and minimizes
    table = Bands(bands, eta, strict)
    for key, history in histories.items():
        for value in history:
            if _is_number(value):
                table.add(key, sign * value)
    return table.stops(running)


class WandbHyperband(FirstOpenTrial, FIFOScheduler):
    """`early_terminate: {type: hyperband}` with wandb's stop decisions.

    `bands` are the epochs to judge at (early_stopping.hyperband_cut_points); one Tune
    result is one epoch (`training_iteration`).  Each result costs a sorted
    insert and a look at the running trials, whatever the sweep's size."""

    def __init__(self, bands: Sequence[int], eta: float, strict: bool = True,
                 metric: str | None = None, mode: str | None = None,
                 time_attr: str = "training_iteration"):
        super().__init__()
        self._table = Bands(bands, eta, strict)
        self._eta = float(eta)
        self._metric = metric
        self._mode = mode
        self._time_attr = time_attr
        self._results: dict[str, dict[int, object]] = {}  # trial id -> {iteration: value}, as reported
        self._trials: dict[str, Trial] = {}  # those that may still report (judged while running)

    @property
    def bands(self) -> list[int]:
        return list(self._table.bands)

    @property
    def strict(self) -> bool:
        return self._table.strict

    def set_search_properties(self, metric, mode, **spec) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        if metric:
            self._metric = metric
        if mode:
            if mode not in ("min", "max"):
                raise ValueError(f"mode must be min or max, got {mode!r}")
            self._mode = mode
        return True

    def on_trial_add(self, tune_controller, trial: Trial):
        self._trials[trial.trial_id] = trial
        if trial.trial_id not in self._results and self._metric in (trial.last_result or {}):
            # A trial restored by `tune resume`: every trial that reached a band
            # counts, so its history comes back from its result file.
            for result in self._read_history(trial):
                self._record(trial.trial_id, result)

    def _read_history(self, trial: Trial) -> list[dict]:
        try:
            fs = trial.storage.storage_filesystem
            with fs.open_input_stream(f"{trial.path}/result.json") as stream:
                lines = stream.read().decode("utf-8", "replace").splitlines()
        except Exception as exc:  # noqa: BLE001 - any storage error: judge on what is known
            logger.warning("hyperband: no history for %s (%s); using its last result", trial, exc)
            return [trial.last_result]
        results = []
        for line in lines:
            try:
                result = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(result, dict):
                results.append(result)
        return results

    def _record(self, trial_id: str, result: dict) -> None:
        step, value = result.get(self._time_attr), result.get(self._metric)
        if not isinstance(step, Real) or value is None:
            return
        results = self._results.setdefault(trial_id, {})
        in_order = not results or step > max(results)
        results[int(step)] = value
        if in_order:
            if _is_number(value):
                self._table.add(trial_id, self._sign * value)
        else:  # an epoch reported again (resumed from an earlier checkpoint): the later value counts
            self._rebuild()

    @property
    def _sign(self) -> float:
        return -metrics.sign(self._mode)

    def _rebuild(self) -> None:
        table = Bands(self._table.bands, self._eta, self._table.strict)
        for trial_id, results in self._results.items():
            for step in sorted(results):
                if _is_number(results[step]):
                    table.add(trial_id, self._sign * results[step])
        self._table = table

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._trials[trial.trial_id] = trial
        self._record(trial.trial_id, result)
        running = [tid for tid, t in self._trials.items() if t is trial or t.status == Trial.RUNNING]
        if len(running) < len(self._trials) // 2:  # keep the look at trials proportional to the running ones
            self._trials = {tid: t for tid, t in self._trials.items()
                            if t is trial or t.status in (Trial.RUNNING, Trial.PENDING, Trial.PAUSED)}
        stop = self._table.stops(running)
        for tid in stop:
            if tid != trial.trial_id:
                tune_controller.stop_trial(self._trials[tid])
        return TrialScheduler.STOP if trial.trial_id in stop else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return (f"wandb hyperband: bands {self._table.bands}, eta {self._eta:g}, "
                f"{'strict' if self._table.strict else 'best so far'}")
