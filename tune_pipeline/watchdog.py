"""Time limits for one training run, used by `tune train` and by each Ray
trial; no Ray here.  The rule, stated once (docs/resume-and-faults.md quotes it):

- `trial_timeout` (wall seconds, 0 = none) bounds the whole run, always.
- A run is *stalled* when it makes no progress for STALL_FACTOR (10) times
  what its own progress so far predicts, and never sooner than MIN_STALL_S
  (60 s):
  - once an epoch has finished in this process: 10x its slowest epoch;
  - in its first epoch, from the end of its first batch: 10x the epoch's
    length extrapolated from the pace of its batches (once two have
    finished), or 10x the slowest epoch of its earlier run (a resumed trial
    or `tune train --resume`, from its checkpoint), whichever is longer;
  - before that (loading data, building the model, a cold compile, the
    first batches): STARTUP_S (10 minutes).

How a run is stopped: it executes in a worker thread while the calling
thread watches.  When the run is overdue, `TrialStalled` is raised in the
worker at its next Python bytecode, and again every POLL_S (code that catches
broadly can swallow one), for up to GRACE_S; never while the worker imports
(an import cut short leaves half a module behind: torch's lazy imports then
failed in every later run of the process).
Then the caller raises `TrialStalled` itself whether or not the worker has
stopped: a worker stuck inside one C call is abandoned (a daemon thread, still
sent the exception until it ends, and gone with its process).  So the limit
holds in every case where Python runs at all; only a C call that never
releases Python's lock could escape it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, TypeVar

from tune_pipeline.internals import raise_in_thread, thread_may_be_importing

STALL_FACTOR = 10.0
MIN_STALL_S = 60.0  # an epoch of 0.1 s must not make a 1-second checkpoint save a stall
STARTUP_S = 600.0   # data, model, a cold compile (54-81 s measured on CPU) and a first batch
GRACE_S = 5.0       # a worker that unwinds does so within a poll; this only waits out a C call
POLL_S = 0.2

T = TypeVar("T")


class TrialStalled(BaseException):
    """Raised in the training thread; a BaseException so that a user's
    `except Exception` inside a transform script cannot swallow it."""

    reason = "the run stalled"

    def __init__(self, reason: str | None = None):
        super().__init__()
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.reason


def epoch_seconds(resume_state: dict | None) -> list[float]:
    """How long each epoch of a resumed run took (training and validation,
    from its checkpoint's history), to measure its first epoch here against."""
    history = (resume_state or {}).get("history") or []
    return [float(h.get("epoch_seconds") or 0) + float(h.get("val_seconds") or 0)
            for h in history if isinstance(h, dict)]


def _raise_in(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Ask Python to raise `exc_type` in `thread` at its next bytecode; not
    while it may be inside an import (the next poll asks again): an exception
    there leaves half a module in the process (torch's lazy imports of sympy
    and triton then failed in every later run of the same process)."""
    if thread.ident is not None and not thread_may_be_importing(thread.ident):
        raise_in_thread(thread.ident, exc_type)


class Watchdog:
    """`Watchdog(timeout_s).run(fn)`; `fn` calls `batch_done()` after each
    batch and `beat()` after each epoch (both cheap, from any thread)."""

    def __init__(self, timeout_s: float = 0.0, *, stall_factor: float = STALL_FACTOR,
                 min_stall_s: float = MIN_STALL_S, startup_s: float = STARTUP_S,
                 grace_s: float = GRACE_S, earlier_epochs: Iterable[float] = ()):
        self.timeout_s = timeout_s or 0.0
        self.stall_factor = stall_factor
        self.min_stall_s = min_stall_s
        self.startup_s = startup_s
        self.grace_s = grace_s
        self.reason: str | None = None
        self._started = self._last = time.monotonic()
        self._slowest = max((s for s in earlier_epochs if s and s > 0), default=0.0)
        self._epochs = 0                        # epochs finished in this process
        self._first_batch: float | None = None  # when this epoch's first batch ended
        self._latest_batch = 0.0
        self._batches = 0                       # batches finished in this epoch
        self._steps = 0                         # batches in an epoch

    # ------------------------------------------------------------ progress

    def batch_done(self, step: int, steps: int) -> None:
        now = time.monotonic()
        if self._first_batch is None:
            self._first_batch, self._batches = now, 0
        self._batches += 1
        self._latest_batch, self._steps = now, steps

    def beat(self) -> None:
        """An epoch finished (its checkpoint written)."""
        now = time.monotonic()
        self._slowest = max(self._slowest, now - self._last)
        self._last = now
        self._epochs += 1
        self._first_batch, self._batches = None, 0

    def stall_limit(self) -> tuple[float, float, str] | None:
        """(since when, how many seconds, why that long) for the current
        stretch without progress, or None when stall detection is off."""
        if not self.stall_factor:
            return None
        factor = self.stall_factor
        if self._epochs:
            return (self._last, max(factor * self._slowest, self.min_stall_s),
                    f"{factor:g}x the slowest epoch, {self._slowest:.1f} s")
        # The first epoch in this process, measured from its first batch (the
        # startup before it may hold a cold compile): against the epochs of
        # an earlier run of this trial, or the pace of its own batches.
        limits = []
        if self._first_batch is not None and self._slowest:
            limits.append((max(factor * self._slowest, self.min_stall_s),
                           f"{factor:g}x the slowest earlier epoch, {self._slowest:.1f} s"))
        if self._first_batch is not None and self._batches >= 2 and self._steps:
            epoch = (self._latest_batch - self._first_batch) / (self._batches - 1) * self._steps
            limits.append((max(factor * epoch, self.min_stall_s),
                           f"{factor:g}x the first epoch's {epoch:.1f} s expected from its batches"))
        if limits:
            seconds, why = max(limits)
            return self._first_batch, seconds, why
        return self._started, max(self.startup_s, self.min_stall_s), "the limit before a first epoch's pace is known"

    def overdue(self, now: float | None = None) -> str | None:
        """Why the run should stop now, or None."""
        now = time.monotonic() if now is None else now
        if self.timeout_s and now - self._started > self.timeout_s:
            return f"trial_timeout: still running after {self.timeout_s:g} s"
        limit = self.stall_limit()
        if limit is not None:
            since, seconds, why = limit
            if now - since > seconds:
                return f"stalled: no progress for {now - since:.0f} s ({why})"
        return None

    # ------------------------------------------------------------ running

    def run(self, fn: Callable[[], T]) -> T:
        """`fn()` in a worker thread, watched: its value, or its exception,
        or `TrialStalled` once it is overdue.  Ctrl-C (KeyboardInterrupt in
        this thread) is passed on to the worker before it is raised here."""
        outcome: dict = {}
        # The worker's end is its own Event, not Thread.is_alive(): a Ctrl-C that
        # lands inside Thread.join marks a running thread as stopped (CPython
        # 3.11), and the training thread then ran on until exit aborted it.
        done = threading.Event()

        def work():
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, name="tune-run", daemon=True)
        self._started = self._last = time.monotonic()
        worker.start()
        try:
            while not done.wait(POLL_S):
                reason = self.overdue()
                if reason is not None:
                    self.reason = reason
                    self._stop(worker, done, type("TrialStalled", (TrialStalled,), {"reason": reason}))
                    raise TrialStalled(reason)
        except KeyboardInterrupt:
            self._stop(worker, done, KeyboardInterrupt)
            raise
        if "error" in outcome:
            raise outcome.pop("error")
        return outcome.get("value")

    def _stop(self, worker: threading.Thread, done: threading.Event, exc_type: type[BaseException]) -> None:
        """Raise `exc_type` in the worker until it ends; wait for that up to
        grace_s, then leave a thread that keeps raising it until it does."""
        deadline = time.monotonic() + self.grace_s
        while not done.is_set() and time.monotonic() < deadline:
            _raise_in(worker, exc_type)
            done.wait(POLL_S)
        if not done.is_set():
            threading.Thread(target=_keep_raising, args=(worker, done, exc_type),
                             name="tune-run-reaper", daemon=True).start()


def _keep_raising(worker: threading.Thread, done: threading.Event, exc_type: type[BaseException]) -> None:
    while not done.is_set():
        _raise_in(worker, exc_type)
        done.wait(POLL_S)
