"""How the training loop's threads wait on a CPU that other work shares.

torch runs its operations on a thread per core (OpenMP, GNU libgomp in the
pip wheels), and by default a thread that finishes its part first spins,
burning its core, until the others arrive.  When another process holds one
of the cores, the thread that shares it runs a fraction of the time while
the other spins waiting for it: on 2 cores beside one busy process,
small_cnn fell from 2,456 images/s to 265-415 (BENCHMARKS.md, "A loop that
shares the CPU").  Waiting threads that sleep instead (OpenMP's PASSIVE wait
policy) give their core back, and keep the thread count, so a run's numbers
do not depend on the load beside it (one thread against two changes them).

libgomp reads the policy once, when torch loads it: `share_the_cpu` runs
first thing in `tune` (cli.main), and a local Ray's workers inherit it.  A
user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
"""

from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def share_the_cpu(environ=os.environ) -> None:
    """Before torch is imported: OpenMP threads that sleep while they wait."""
    if not any(key in environ for key in USER_KEYS):
        environ["OMP_WAIT_POLICY"] = WAIT_POLICY
