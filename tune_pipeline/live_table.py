"""The live table's Ray side: `LiveTable`, the Tune callback that keeps the
table of a running sweep (what it shows and how is `progress.py`'s, which
imports no Ray so `tune status` does not pay for it).  A callback, because Ray
ignores custom progress reporters in its new console output, but callbacks run
in the driver on every loop step.

The table does a fixed amount of work per event whatever the number of
trials: each trial is taken in once, when Ray creates it; labels grow with
each new value (labels.Labeller.add); counts, the ETA's sums and the ranking
of finished trials are kept up to date; a refresh looks only at the running
trials and the rows it shows.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ray import tune

from tune_pipeline.experiment import (FAILED, FAILED_STATE, FINISHED, PENDING_STATE, RUNNING_STATE, STATES, _error_reason,
                                      state_name)
from tune_pipeline.labels import Labeller, describe
from tune_pipeline.metrics import RUNNING_BEST, best_of, fmt, goal, selection_note
from tune_pipeline.storage import is_uri
from tune_pipeline.progress import (DONE_STATES, EPOCH_LINE_SECONDS, REFRESH_SECONDS, Row, count_line, pack, render,
                                    row_score, short_duration)
from tune_pipeline.sweep_console import LIVE_TABLES, PHASE_SECONDS, SweepConsole

@dataclass
class _Live:
    """A trial as the live table keeps it: its row, Ray's trial (for its
    status at a refresh), and when its last epoch (or its start) was seen."""
    row: Row
    trial: object
    seq: int
    since: float | None = None
    reported: bool = False  # an epoch ended in this session (the first pays the trial's start)
    pace: float | None = None  # seconds its last epoch but a first one took (models differ)
    rank: tuple | None = field(default=None)  # its key in LiveTable._done


class LiveTable(tune.Callback):
    """A Tune callback: Ray ignores custom progress reporters in its new
    console output, but callbacks run in the driver on every loop step."""

    def __init__(self, swept: list[str], metric: str, mode: str, console: SweepConsole, total: int = 0):
        self.swept, self.metric, self.mode, self.console = swept, metric, mode, console
        self.total = total  # Ray creates trials lazily: len(trials) is not the sweep's size
        self._live = None
        self._last = 0.0
        self._started = time.monotonic()
        self._epoch_lines: dict[str, float] = {}
        # A trial's own running best of the metric (best_val_accuracy for
        # val_accuracy) carries its best across a resume; only when the
        # sweep's goal is the metric's own.
        running_best = RUNNING_BEST.get(metric)
        self._running_best = running_best if running_best and goal(metric) == mode else None
        self._left_out: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self._known = 0                      # trials of Ray's list taken in
        self._trials: dict[str, _Live] = {}
        self._running: dict[str, _Live] = {}
        self._pending: dict[str, _Live] = {}  # in creation order
        self._done: list[tuple] = []          # (-score, seq, trial id), best first
        self._counts = {s: 0 for s in STATES}
        self._by = {k: Labeller() for k in self.swept}
        self._prefix: str | None = None       # what every trial id shares, up to a `_`
        self._left = 0.0                      # trial-epochs still to run, of the trials Ray has made
        self._planned = [0, 0]                # sum and count of planned epochs (for trials not made yet)
        # Seconds and count of the epochs timed in this session: a trial's
        # first (with its worker's start, or its restore) and the others.
        self._first_epochs = [0.0, 0]
        self._later_epochs = [0.0, 0]
        self._fresh = 0                       # unfinished trials whose next epoch is their first here
        self._peak_running = 0
        self._results = 0
        self._said_starting = False

    # Ray pickles the run config (callbacks included) for `Tuner.restore`; a
    # terminal does not pickle, so a restored table writes to this process's.
    def __getstate__(self):
        return {"swept": self.swept, "metric": self.metric, "mode": self.mode, "total": self.total}

    def __setstate__(self, state):
        self.__init__(console=SweepConsole(), **state)

    def setup(self, **info):
        self._started = time.monotonic()
        if self.console is not None and self.console.live:
            from rich.live import Live
            # Transient: the final table is drawn from disk, where the states are settled.
            self._live = Live(console=self.console.rich, refresh_per_second=2, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
            LIVE_TABLES.add(self)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        LIVE_TABLES.discard(self)

    # ------------------------------------------------------------ keeping count

    def _take_new(self, trials) -> None:
        """Take in the trials Ray created since the last call: Ray appends to its list."""
        if len(trials) < self._known:  # not the list we followed: start again
            self._reset()
        for trial in trials[self._known:]:  # a slice of the new ones (islice would walk past the old ones)
            self._add(trial)
        self._known = len(trials)

    def leave_out(self, trial_ids) -> None:
        """Trials Ray still lists that the experiment does not count: lost
        ones that a new trial replaces on a resume.  A restored table is
        unpickled before the resume knows them, so it is told here."""
        self._left_out = set(trial_ids)
        self._reset()  # what was taken in is taken in again, without them

    def _add(self, trial) -> None:
        if trial.trial_id in self._trials or trial.trial_id in self._left_out:
            return
        result = trial.last_result or {}
        epoch = _int(result.get("epoch"))
        row = Row(trial.trial_id, PENDING_STATE, trial.config, epoch, _finite(result.get(self.metric)), None)
        row.best = self._better(_finite(result.get(self._running_best)) if self._running_best else None, row.last)
        live = _Live(row, trial, len(self._trials))
        self._trials[trial.trial_id] = live
        for k in self.swept:
            self._by[k].add(trial.config.get(k))
        self._prefix = _common_prefix(self._prefix, trial.trial_id)
        planned = row.planned
        if planned:
            self._planned[0] += planned
            self._planned[1] += 1
        self._left += self._remaining(row)
        self._fresh += 1
        self._counts[PENDING_STATE] += 1
        self._pending[trial.trial_id] = live
        status = trial.status
        if status in (FINISHED, FAILED):
            self._move(live, state_name(status, epoch, planned, live=True))
        elif status == "RUNNING":
            self._move(live, RUNNING_STATE)

    def _remaining(self, row: Row) -> float:
        planned = row.planned or self._mean_planned()
        return max(planned - row.epoch, 0) if planned else 0.0

    def _mean_planned(self) -> float:
        return self._planned[0] / self._planned[1] if self._planned[1] else 0.0

    def _better(self, a, b):
        return best_of((a, b), self.mode)

    def _move(self, live: _Live, state: str) -> None:
        row = live.row
        old = row.state
        if old == state:
            return
        self._counts[old] = self._counts.get(old, 0) - 1
        self._counts[state] = self._counts.get(state, 0) + 1
        if old == RUNNING_STATE:
            self._running.pop(row.trial_id, None)
        elif old == PENDING_STATE:
            self._pending.pop(row.trial_id, None)
        elif live.rank is not None:
            index = bisect.bisect_left(self._done, live.rank)
            if index < len(self._done) and self._done[index] == live.rank:
                del self._done[index]
            live.rank = None
        if old not in DONE_STATES and state in DONE_STATES:
            self._left -= self._remaining(row)
            self._fresh -= not live.reported
        row.state = state
        if state == RUNNING_STATE:
            self._running[row.trial_id] = live
            self._peak_running = max(self._peak_running, len(self._running))
            live.since = time.monotonic()
        elif state == PENDING_STATE:
            self._pending[row.trial_id] = live
        else:
            live.rank = (-row_score(row, self.mode), live.seq, row.trial_id)
            bisect.insort(self._done, live.rank)

    def _check_running(self) -> None:
        """A trial Ray ended without telling a callback still ends in the table."""
        for live in list(self._running.values()):
            status = live.trial.status
            if status in (FINISHED, FAILED):
                self._move(live, state_name(status, live.row.epoch, live.row.planned, live=True))

    # ------------------------------------------------------------ what is shown

    def eta(self, now: float) -> float | None:
        """Seconds left, from the trial-epochs left and the seconds an epoch
        took in this session (a trial's first epoch here, which pays for its
        start, timed apart from the others): each running trial's remaining
        epochs, less the part of the current one already done (so the ETA
        counts down between epochs), then the waiting trials given in turn to
        whichever of the slots (the most trials that ran at once) frees first.
        It assumes every trial runs all its epochs: early stops end the sweep
        sooner.  The work is in the running trials, not in all of them."""
        if not (self._first_epochs[1] or self._later_epochs[1]):
            return None
        later = (self._later_epochs[0] / self._later_epochs[1] if self._later_epochs[1]
                 else self._first_epochs[0] / self._first_epochs[1])
        first = self._first_epochs[0] / self._first_epochs[1] if self._first_epochs[1] else later
        slots, running_left, running_fresh = [], 0.0, 0
        for live in self._running.values():
            epochs = self._remaining(live.row)
            running_left += epochs
            running_fresh += not live.reported
            pace = live.pace or later  # a running trial at its own pace, once known
            work = epochs * pace + (0.0 if live.reported else first - pace)
            under_way = min(now - live.since, pace if live.reported else first) if live.since is not None else 0.0
            slots.append(max(work - under_way, 0.0))
        slots += [0.0] * (max(1, self._peak_running) - len(slots))
        not_made = max(self.total - len(self._trials), 0)
        waiting = len(self._pending) + not_made
        if not waiting:
            return max(slots)
        work = ((self._left - running_left + not_made * self._mean_planned()) * later
                + (self._fresh - running_fresh + not_made) * (first - later))
        return _makespan(slots, waiting, max(work, 0.0) / waiting)

    def header(self, now: float, width: int) -> list[str]:
        done = sum(self._counts.get(s, 0) for s in DONE_STATES)
        total = max(self.total, len(self._trials))
        parts = [f"elapsed {short_duration(now - self._started)}", f"{done}/{total} trials done"]
        eta = self.eta(now)
        if done < total:
            parts.append(f"ETA {short_duration(eta)}" if eta is not None else "ETA after the first epoch"
                         if self._running or done else "first trials starting")
        if selection_note(self.metric).endswith("test data"):
            parts.append(selection_note(self.metric))  # a ranking chosen on the test set says so
        counts = dict(self._counts)
        counts[PENDING_STATE] = counts.get(PENDING_STATE, 0) + max(self.total - len(self._trials), 0)
        return pack(parts, width) + pack(count_line(counts).split(", "), width, ", ")

    def candidates(self, room: int) -> tuple[list[Row], dict[str, int]]:
        """At most `room` rows of each kind, in the table's order, and the
        counts per state of the trials left out: no more than the table can show."""
        running = sorted((live.row for live in self._running.values()), key=lambda r: row_score(r, self.mode),
                         reverse=True)[:room]
        done = [self._trials[trial_id].row for _, _, trial_id in self._done[:room]]
        pending = [live.row for live in itertools.islice(self._pending.values(), room)]
        listed = running + done + pending
        unlisted = dict(self._counts)
        for row in listed:
            unlisted[row.state] -= 1
        unlisted[PENDING_STATE] = unlisted.get(PENDING_STATE, 0) + max(self.total - len(self._trials), 0)
        return listed, unlisted

    def short_id(self, trial_id: str) -> str:
        cut = len(self._prefix or "")
        return trial_id[cut:] or trial_id

    def renderable(self, trials=None):
        if trials is not None:
            self._take_new(trials)
        self._check_running()
        console = self.console.rich
        now = time.monotonic()
        rows, unlisted = self.candidates(max(console.height, 1))
        return render(rows, self.swept, self.metric, console.width, console.height,
                      header=self.header(now, console.width),
                      unlisted=unlisted, ids=self.short_id,
                      experiment_dir=SweepConsole.experiment_dir)

    # ------------------------------------------------------------ Ray's hooks

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last < REFRESH_SECONDS:
            return
        self._last = now
        self._take_new(trials)
        if self._live is not None:
            self._live.update(self.renderable())
        elif (self.console is not None and not self._said_starting and self._results == 0
              and now - self._started >= PHASE_SECONDS):
            self._said_starting = True
            self.console.print("first trials starting…")

    def on_trial_start(self, iteration, trials, trial, **info):
        self._take_new(trials)
        live = self._trials.get(trial.trial_id)
        if live is not None:
            self._move(live, RUNNING_STATE)
            live.since = time.monotonic()

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._take_new(trials)
        now = time.monotonic()
        live = self._trials.get(trial.trial_id)
        if live is not None:
            self._results += 1
            row = live.row
            since = live.since if row.state == RUNNING_STATE else None  # a start we did not see: not timed
            self._move(live, RUNNING_STATE)
            epoch = _int(result.get("epoch"))
            if epoch > row.epoch:
                self._left -= min(epoch - row.epoch, self._remaining(row))
                if since is not None:
                    timed = self._later_epochs if live.reported else self._first_epochs
                    timed[0] += now - since
                    timed[1] += 1
                    if live.reported:
                        live.pace = (now - since) / (epoch - row.epoch)
                row.epoch = epoch
            if not live.reported:
                live.reported = True
                self._fresh -= 1
            live.since = now
            row.last = _finite(result.get(self.metric))
            row.best = self._better(self._better(row.best, row.last),
                                    _finite(result.get(self._running_best)) if self._running_best else None)
        if self.console is None or self._live is not None:
            return
        if now - self._epoch_lines.get(trial.trial_id, -EPOCH_LINE_SECONDS) < EPOCH_LINE_SECONDS:
            return
        self._epoch_lines[trial.trial_id] = now
        self.console.print(f"[{short_duration(now - self._started)}] {trial.trial_id} epoch {result.get('epoch', '?')}"
                           f"/{trial.config.get('epochs', '?')}: {self.metric} "
                           f"{fmt(self.metric, result.get(self.metric))}  {self._describe(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._take_new(trials)
        result = trial.last_result or {}
        epoch = _int(result.get("epoch"))
        state = state_name(FINISHED, epoch, trial.config.get("epochs"), live=True)
        live = self._trials.get(trial.trial_id)
        if live is not None:
            self._move(live, state)
        self._event(trial, state)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._take_new(trials)
        live = self._trials.get(trial.trial_id)
        if live is not None:
            self._move(live, FAILED_STATE)
        self._event(trial, FAILED_STATE)

    def on_experiment_end(self, trials, **info):
        self.stop()

    def _describe(self, trial) -> str:
        return describe(trial.config, self.swept, self._by, sep=" ")

    def _event(self, trial, state: str) -> None:
        if self.console is None:
            return
        result = trial.last_result or {}
        if state == FAILED_STATE:
            error_file = Path(trial.error_file) if trial.error_file else None
            reason = _error_reason(error_file.read_text()) if error_file and error_file.exists() else "failed"
            if error_file is not None and trial.path and not is_uri(trial.path):
                error_file = Path(trial.path) / error_file.name  # where it is kept, not Ray's temp copy
            line = f"failed {trial.trial_id} at epoch {result.get('epoch', 0)}: {reason}" + (
                f" ({error_file})" if error_file else "")
            if self._live is not None:  # above the table; finished trials show in it
                self._live.console.print(line, soft_wrap=True)
            else:
                self.console.print(line)
            return
        if self._live is not None:
            return
        done = sum(self._counts.get(s, 0) for s in DONE_STATES)
        live = self._trials.get(trial.trial_id)
        best = live.row.best if live is not None else None
        self.console.print(
            f"[{done}/{max(self.total, len(self._trials))}] {trial.trial_id} {state} at epoch "
            f"{result.get('epoch', 0)}: {self.metric} {fmt(self.metric, result.get(self.metric))}"
            f" best {fmt(self.metric, best)}  {self._describe(trial)}")


def _makespan(slots: list[float], jobs: int, length: float) -> float:
    """When `jobs` equal jobs of `length` seconds are done, each given to the
    slot that frees first, the slots freeing after `slots` seconds: the least
    T by which the slots hold them all (for equal jobs, what that greedy order
    gives).  A bisection over T: the work is in the slots, not in the jobs."""
    if length <= 0:
        return max(slots)

    def fits(t: float) -> bool:
        return sum(int((t - s) / length + 1e-9) for s in slots if t >= s) >= jobs

    low, high = min(slots), max(slots) + math.ceil(jobs / len(slots)) * length + length
    for _ in range(60):
        middle = (low + high) / 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return max(high, max(slots))


def _int(value) -> int:
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0


def _finite(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _common_prefix(prefix: str | None, text: str) -> str:
    """The part every trial id so far shares, ending at a `_` (Ray's `d6c5f_`)."""
    if prefix is None:
        cut = text.rfind("_")
        return text[:cut + 1] if cut >= 0 else ""
    n = 0
    while n < len(prefix) and n < len(text) and prefix[n] == text[n]:
        n += 1
    if n == len(prefix):
        return prefix
    cut = text.rfind("_", 0, n)
    return text[:cut + 1] if cut >= 0 else ""


