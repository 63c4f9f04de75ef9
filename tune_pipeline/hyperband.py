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

import json
import logging
import math
from numbers import Real
from typing import Hashable, Iterable, Mapping, Sequence

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

# Under Ray Tune's logger: the sweep's log settings (quiet unless --verbose) apply.
logger = logging.getLogger("ray.tune.wandb_hyperband")


def _is_number(value) -> bool:
    """wandb's `is_number`: a finite real that is not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def runs_to_stop(histories: Mapping[Hashable, Sequence], running: Iterable[Hashable], bands: Sequence[int],
                 eta: float, mode: str = "min", strict: bool = True) -> list:
    """The running runs wandb's hyperband stops, in `histories`' order.

    `histories` maps every run of the sweep to its metric values in the order
    logged (invalid values are skipped, as wandb's filter_invalid does);
    `bands` are wandb's epochs; `mode` is "min" or "max"."""
    sign = -1.0 if mode == "max" else 1.0  # wandb negates a maximized metric and minimizes
    valid = {key: [sign * v for v in history if _is_number(v)] for key, history in histories.items()}
    reached = [h for h in valid.values() if h]
    bands = list(bands)
    r = 1.0 / eta
    thresholds = []
    for band in bands:
        values = [h[band - 1] for h in reached if len(h) >= band]
        thresholds.append(sorted(values)[int(r * len(values))] if values else math.inf)
    running = set(running)
    stop = []
    for key, history in valid.items():
        if key not in running:
            continue
        last = None
        for band, threshold in zip(bands, thresholds):
            if band > len(history):
                break
            last = band, threshold
        if last is None:
            continue
        band, threshold = last
        judged = history[band - 1] if strict else min(history)
        if judged > threshold:
            stop.append(key)
    return stop


class WandbHyperband(FIFOScheduler):
    """`early_terminate: {type: hyperband}` with wandb's stop decisions.

    `bands` are the epochs to judge at (space.hyperband_cut_points); one Tune
    result is one epoch (`training_iteration`)."""

    def __init__(self, bands: Sequence[int], eta: float, strict: bool = True,
                 metric: str | None = None, mode: str | None = None,
                 time_attr: str = "training_iteration"):
        super().__init__()
        self._bands = sorted({int(b) for b in bands})
        self._eta = float(eta)
        self._strict = bool(strict)
        self._metric = metric
        self._mode = mode
        self._time_attr = time_attr
        self._histories: dict[str, dict[int, float]] = {}  # trial id -> {iteration: value}
        self._trials: dict[str, Trial] = {}

    @property
    def bands(self) -> list[int]:
        return list(self._bands)

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
        if trial.trial_id not in self._histories and self._metric in (trial.last_result or {}):
            # A trial restored by `tune resume`: every trial that reached a band
            # counts, so its history comes back from its result file.
            self._histories[trial.trial_id] = self._read_history(trial)

    def _read_history(self, trial: Trial) -> dict[int, float]:
        history: dict[int, float] = {}
        try:
            fs = trial.storage.storage_filesystem
            with fs.open_input_stream(f"{trial.path}/result.json") as stream:
                lines = stream.read().decode("utf-8", "replace").splitlines()
        except Exception as exc:  # noqa: BLE001 - any storage error: judge on what is known
            logger.warning("hyperband: no history for %s (%s); using its last result", trial, exc)
            lines = [json.dumps(trial.last_result, default=str)]
        for line in lines:
            try:
                result = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(result, dict):
                self._record(history, result)
        return history

    def _record(self, history: dict[int, float], result: dict) -> None:
        step, value = result.get(self._time_attr), result.get(self._metric)
        if isinstance(step, Real) and value is not None:
            history[int(step)] = value  # a resumed trial repeats an epoch: the later value wins

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._trials[trial.trial_id] = trial
        self._record(self._histories.setdefault(trial.trial_id, {}), result)
        running = {tid for tid, t in self._trials.items() if t is trial or t.status == Trial.RUNNING}
        histories = {tid: [h[i] for i in sorted(h)] for tid, h in self._histories.items()}
        stop = runs_to_stop(histories, running, self._bands, self._eta, self._mode or "min", self._strict)
        for tid in stop:
            if tid != trial.trial_id:
                tune_controller.stop_trial(self._trials[tid])
        return TrialScheduler.STOP if trial.trial_id in stop else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return (f"wandb hyperband: bands {self._bands}, eta {self._eta:g}, "
                f"{'strict' if self._strict else 'best so far'}")
