"""`compile: auto`, decided in one place: which keys change the graphs
torch.compile builds, how many trials share one cold compile, when auto
compiles, how a continued trial keeps its choice, and how the choice is
recorded in a trial's results (for `tune train --from`).  Nothing of torch
or Ray: the space, the sweep, the trainable, the loop and the CLI read it.
"""

from __future__ import annotations

# Keys whose values change the graphs torch.compile builds: trials that differ
# in none of them can share one compile through the on-disk cache.
GRAPH_KEYS = ("model", "dataset", "image_size", "batch_size", "channels_last", "amp", "amp_dtype", "device")
# `compile: auto` compiles only where at least this many trials share each
# cold compile (BENCHMARKS.md, "Compile paid once per sweep").
COMPILE_AUTO_MIN_TRIALS = 4
COMPILED_KEY = "compiled"  # reported with every result: what the trial chose


def trials_per_graph(trial_count: int, values_of: dict) -> int:
    """Trials that compile the same graphs (model, input shape, precision)
    and so can share one compile.  `values_of`: {swept key: its listed values,
    empty for a numeric distribution, whose values all count as different}."""
    count = trial_count
    for key in GRAPH_KEYS:
        if key in values_of:
            values = values_of[key]
            count //= len(values) if values else count
    return max(1, count)


def trials_per_compile(per_graph: int, concurrent: int) -> float:
    """How many trials share each cold compile of one graph: trials that start
    together each compile cold; later ones find the graphs in the cache."""
    return per_graph / max(concurrent, 1)


def resolve_compile(setting: bool | str, device, trials_per_compile: float = 1) -> bool:
    """Whether a run compiles its model (`device`: a torch.device, or its type).

    `trials_per_compile`: how many runs share each cold compile through the
    on-disk cache (trials that start at once each pay a cold one).  Auto
    compiles on CUDA when that is at least COMPILE_AUTO_MIN_TRIALS (a warm
    start costs a twentieth of a cold one, so each run then pays under a third
    of one), and never on CPU or MPS: on CPU the compiled step was not faster
    than eager (BENCHMARKS.md), MPS is not measured.  A single `tune train`
    run has 1."""
    if setting != "auto":
        return bool(setting)
    return getattr(device, "type", device) == "cuda" and trials_per_compile >= COMPILE_AUTO_MIN_TRIALS


def trial_compiles(setting: bool | str, device, trials_per_compile: float, started=None) -> bool:
    """A sweep's trial: resolved once, at its start.  A continued trial
    (`started`: what its checkpoint says it chose) compiles as it started,
    whatever the cluster is now."""
    return started if isinstance(started, bool) else resolve_compile(setting, device, trials_per_compile)


def compiled_as_run(history: list[dict]) -> bool | None:
    """What a trial chose, from its results; None when they do not say."""
    chosen = [h[COMPILED_KEY] for h in history if isinstance(h.get(COMPILED_KEY), bool)]
    return chosen[-1] if chosen else None
