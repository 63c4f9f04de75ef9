"""How many threads the training loop uses on a CPU that other work shares.

torch starts a thread per core, and its OpenMP threads spin while they wait
for each other at the end of every operation.  When another process holds
one of the cores, the thread that shares it runs a fraction of the time and
the others spin waiting for it: on 2 cores with one busy process beside it,
small_cnn fell from 2,456 images/s to 265-415 with 2 threads, where one
thread did 1,654-1,815 (BENCHMARKS.md, "A loop that shares the CPU").

So a CPU run watches how much of its cores other processes used over the
last seconds (Linux's /proc/stat, less its own time) and trains with the
cores they leave it, never more threads than it started with (a sweep's
trial starts with its CPU share).  Elsewhere, or on a GPU, nothing changes.
"""

from __future__ import annotations

import os
import time

import torch

CHECK_SECONDS = 2.0  # how often the loop looks: a few reads of /proc, ~0.1 ms
_changed: list = []  # the ThreadShare that last set torch's thread count, if one did


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


class ThreadShare:
    def __init__(self, ceiling: int | None = None, every: float = CHECK_SECONDS):
        self.ceiling = ceiling or torch.get_num_threads()
        self.every = every
        try:
            self.cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.cpus = []
        self.enabled = self.ceiling > 1 and len(self.cpus) > 1 and os.path.exists("/proc/stat")
        self.threads = torch.get_num_threads()
        self.last = self._sample() if self.enabled else None
        self.changes: list[tuple[int, float]] = []  # (threads, others' load), for the curious

    def _sample(self) -> tuple[float, float, float] | None:
        """(wall seconds, busy CPU seconds on our cores, our own CPU seconds)."""
        try:
            busy = 0
            wanted = {f"cpu{n}" for n in self.cpus}
            with open("/proc/stat") as f:
                for line in f:
                    name, *fields = line.split()
                    if name in wanted:
                        values = [int(v) for v in fields[:8]]
                        busy += sum(values) - values[3] - values[4]  # all but idle and iowait
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
            mine = int(own[11]) + int(own[12])  # utime + stime, every thread of this process
        except (OSError, ValueError, IndexError):
            return None
        return time.monotonic(), busy / _ticks(), mine / _ticks()

    def others(self) -> float | None:
        """Cores other processes used since the last look (None: not yet time)."""
        now = time.monotonic()
        if self.last is None or now - self.last[0] < self.every:
            return None
        sample = self._sample()
        if sample is None:
            self.enabled = False
            return None
        (t0, busy0, mine0), (t1, busy1, mine1) = self.last, sample
        self.last = sample
        return max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (t1 - t0)

    def tick(self) -> None:
        """Called every step: a clock read, and every few seconds a look at the load."""
        if not self.enabled:
            return
        load = self.others()
        if load is None:
            return
        # The cores others leave, rounded: half a core's load or more takes a thread.
        threads = max(1, min(self.ceiling, int(len(self.cpus) - load + 0.5)))
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            self.changes.append((threads, load))
            _changed[:] = [self]


def restore_threads() -> None:
    """The thread count a run started with, back when it ends (the next run
    in this process starts from it, not from what the load left)."""
    if _changed:
        share = _changed.pop()
        if torch.get_num_threads() == share.threads:
            torch.set_num_threads(share.ceiling)
