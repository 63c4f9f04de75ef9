"""How the training loop's threads wait on a CPU that other work shares.

torch runs its operations on a thread per core (OpenMP, GNU libgomp in the
pip wheels), and by default a thread that finishes its part first spins,
burning its core, until the others arrive.  When another process holds one
of the cores, the thread that shares it runs a fraction of the time while
the other spins waiting for it.  Waiting threads that sleep instead
(OpenMP's PASSIVE wait policy) give their core back and keep the thread
count, so a run's numbers do not depend on the load beside it.  But sleeping
costs a quiet machine: each of the loop's thousands of parallel regions then
ends in a futex sleep and wake (31,000 context switches against 800 in one
short `tune train`; 15-24% fewer images/s, BENCHMARKS.md, "A loop that
shares the CPU").

So the policy follows the machine as the command starts: when other
processes keep at least BUSY_NEIGHBOUR of a core busy over LOAD_PROBE_S,
threads sleep while they wait; on a quiet machine libgomp's default stays
(spin, then sleep).  Where the load cannot be read (not Linux), they sleep:
the choice that never collapses.  libgomp reads the policy once, when torch
loads it: the commands that train (`train`, `search`, `resume`) call
`share_the_cpu` before anything imports torch, and a local Ray's workers
inherit it.  A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
"""

from __future__ import annotations

import os
import time
from typing import Callable

WAIT_POLICY = "PASSIVE"
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# /proc/stat counts in ticks of 1/100 s per core: 0.2 s gives 40 ticks on 2
# cores, enough to see a process that keeps a quarter of a core busy.
LOAD_PROBE_S = 0.2
BUSY_NEIGHBOUR = 0.25  # cores' worth of other processes' CPU that makes the machine shared


def _busy_ticks() -> int:
    """All cores' non-idle ticks since boot (/proc/stat's first line)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle  # guest time is counted inside user already


def _own_ticks() -> int:
    """This process's user + system ticks (/proc/self/stat)."""
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def others_busy_cores(seconds: float = LOAD_PROBE_S) -> float | None:
    """Cores' worth of CPU that other processes used over the next `seconds`;
    None where the kernel does not say (no /proc)."""
    try:
        busy, own, start = _busy_ticks(), _own_ticks(), time.monotonic()
        time.sleep(seconds)
        busy, own = _busy_ticks() - busy, _own_ticks() - own
        elapsed = time.monotonic() - start
        ticks_per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return max(busy - own, 0) / (ticks_per_second * elapsed)


def share_the_cpu(environ=os.environ, probe: Callable[[], float | None] = others_busy_cores) -> str | None:
    """Before torch is imported: OpenMP threads that sleep while they wait
    when other work shares the machine.  Returns the policy set (None: libgomp's
    default, or the user's own setting)."""
    if any(key in environ for key in USER_KEYS):
        return None
    others = probe()
    if others is not None and others < BUSY_NEIGHBOUR:
        return None
    environ["OMP_WAIT_POLICY"] = WAIT_POLICY
    return WAIT_POLICY
