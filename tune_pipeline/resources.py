"""What one trial asks of the cluster, stated once: the resource keys, their
defaults and the rule a share must meet.  The search space's
`tune.resources` and the `--cpus-per-trial`/`--gpus-per-trial` overrides are
checked by the same rule, so they cannot drift apart.  Nothing of Ray.
"""

from __future__ import annotations

import math

# One CPU (one torch thread, trainable._use_assigned_cpus) per trial packs a
# trial on every core, which trained more images/s in all than one trial with
# every core's threads (BENCHMARKS.md, "CPU packing: threads per trial").
DEFAULT_RESOURCES = {"cpu": 1.0, "gpu": 0.0}
RESOURCE_KEYS = tuple(DEFAULT_RESOURCES)


def resource_problem(key: str, value) -> str | None:
    """Why `value` is no share of `key`, or None when it is one.  A CPU share
    must be above 0 (a trial without CPU never runs), a GPU share may be 0;
    both finite (a NaN passes every `>` test and leaves trials pending forever)."""
    if key not in DEFAULT_RESOURCES:
        return f"unknown resource; use {' and '.join(RESOURCE_KEYS)}"
    least = "> 0" if key == "cpu" else ">= 0"
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or (value <= 0 if key == "cpu" else value < 0):
        return f"must be a finite number {least}, got {value!r}"
    return None
