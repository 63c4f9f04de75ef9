"""Time limits for one training run: `trial_timeout` (wall seconds, 0 = none)
and a stall watchdog (no epoch finished for STALL_FACTOR x the slowest epoch so
far, at least MIN_STALL_S).  Used by `tune train` and by each Ray trial; no Ray here.

The run is stopped by raising `TrialStalled` in the thread that trains, at its
next Python bytecode: that ends a script looping or sleeping in small steps.  A
thread stuck inside one C call never gets there, so after GRACE_S more the
process ends itself (`on_give_up` records why first); a Ray trial then fails as
its actor having died, with the reason in the trial's stalled.txt.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from typing import Callable

STALL_FACTOR = 10.0
MIN_STALL_S = 60.0  # an epoch of 0.1 s must not make a 1-second checkpoint save a stall
GRACE_S = 30.0
POLL_S = 0.5


class TrialStalled(BaseException):
    """Raised in the training thread; a BaseException so that a user's
    `except Exception` inside a transform script cannot swallow it."""

    reason = "the run stalled"

    def __str__(self) -> str:
        return self.reason


class Watchdog:
    """`with Watchdog(timeout_s) as dog:` around the run; `dog.beat()` after each epoch."""

    def __init__(self, timeout_s: float = 0.0, *, stall_factor: float = STALL_FACTOR,
                 min_stall_s: float = MIN_STALL_S, grace_s: float = GRACE_S,
                 on_give_up: Callable[[str], None] | None = None):
        self.timeout_s = timeout_s or 0.0
        self.stall_factor = stall_factor
        self.min_stall_s = min_stall_s
        self.grace_s = grace_s
        self.on_give_up = on_give_up
        self.reason: str | None = None
        self._target = threading.current_thread()
        self._done = threading.Event()
        self._started = self._last = time.monotonic()
        self._slowest = 0.0
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        now = time.monotonic()
        self._slowest = max(self._slowest, now - self._last)
        self._last = now

    def overdue(self, now: float | None = None) -> str | None:
        """Why the run should stop now, or None."""
        now = time.monotonic() if now is None else now
        if self.timeout_s and now - self._started > self.timeout_s:
            return f"trial_timeout: still running after {self.timeout_s:g} s"
        if self._slowest and self.stall_factor:
            limit = max(self.stall_factor * self._slowest, self.min_stall_s)
            if now - self._last > limit:
                return (f"stalled: no epoch finished for {now - self._last:.0f} s "
                        f"({self.stall_factor:g}x the slowest epoch, {self._slowest:.1f} s)")
        return None

    def _watch(self) -> None:
        while not self._done.wait(POLL_S):
            reason = self.overdue()
            if reason is None:
                continue
            self.reason = reason
            stalled = type("TrialStalled", (TrialStalled,), {"reason": reason})
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target.ident),
                                                       ctypes.py_object(stalled))
            if self._done.wait(self.grace_s):
                return
            # Stuck in one C call: the exception never lands.  Say why, then end the process.
            if self.on_give_up is not None:
                try:
                    self.on_give_up(reason)
                except Exception:
                    pass
            print(f"error: {reason}; the run did not stop within {self.grace_s:g} s, ending the process",
                  file=sys.stderr, flush=True)
            os._exit(1)

    def __enter__(self) -> "Watchdog":
        if self.timeout_s or self.stall_factor:
            self._thread = threading.Thread(target=self._watch, name="tune-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.reason is not None and exc_type is None:
            # Fired as the run was ending: the exception may still be pending in this
            # thread; clear it so it cannot land later in unrelated code.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._target.ident), None)
