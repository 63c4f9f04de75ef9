"""What `tune search` says of a sweep before it starts: the description a
real run prints too (`describe_space`) and the dry run's preview."""

from __future__ import annotations


def describe_space(space, resources: dict | None = None) -> list[str]:
    """What the sweep will do, as the dry run and the real run both say it;
    `resources`: a trial's, with --cpus-per-trial/--gpus-per-trial applied."""
    from tune_pipeline.metrics import goal_word

    s = space.scheduler
    resources = resources or space.resources
    if s["type"] == "hyperband":
        scheduler = (f"wandb's hyperband (cut points at epochs {', '.join(map(str, s['cut_points']))}; "
                     f"eta {s['eta']:g}, {'strict' if s['strict'] else 'not strict'}, from early_terminate)")
    elif s["type"] == "pbt":
        from tune_pipeline.pbt import describe
        scheduler = describe(s)
    else:
        scheduler = s["type"] if s["type"] == "fifo" else (
            f"asha (cut points at epochs {', '.join(map(str, s['cut_points']))}; max_t {s['max_t']}, "
            f"reduction factor {s['reduction_factor']:g}, from {s.get('source', 'the file')})")
    target = f", stops when {space.metric} reaches {space.target:g}" if space.target is not None else ""
    repeats = f" ({space.repeats} seeds per grid point)" if space.repeats > 1 else ""
    count = space.trial_count()
    lines = [f"{space.source}: method {space.method}, {count} trial{'s' if count != 1 else ''}{repeats}, metric "
             f"{space.metric} ({goal_word(space.mode)}){target}, scheduler "
             f"{scheduler}, {resources['cpu']:g} CPU + {resources['gpu']:g} GPU per trial"]
    if space.ignored:
        lines.append(f"ignored: {', '.join(space.ignored)}")
    lines += [f"note: {n}" for n in space.notes]
    return lines


PREVIEW_TRIALS = 3


def print_preview(space, resources: dict, max_concurrent: int | None, storage_path: str, *, echo, warn) -> None:
    """`tune search --dry-run`: the description, the fixed values, the first
    trials' configs and the disk the sweep will need (`warn` gets a note when
    the disk looks short)."""
    from tune_pipeline.sampling import preview_configs

    for line in describe_space(space, resources):
        echo(line)
    at_once = max_concurrent or space.max_concurrent_trials
    if at_once:
        echo(f"at most {at_once} trial{'s' if at_once != 1 else ''} at once")
    echo("fixed: " + ", ".join(f"{k}={v}" for k, v in space.fixed.items() if k not in space.swept()))
    count = min(PREVIEW_TRIALS, space.trial_count())
    for i, cfg in enumerate(preview_configs(space, count), 1):
        echo(f"trial {i}: " + (", ".join(f"{k}={cfg[k]}" for k in space.swept()) or "(no swept keys)"))
    if space.trial_count() > count:
        echo(f"… and {space.trial_count() - count} more trial{'s' if space.trial_count() - count != 1 else ''}")
    from tune_pipeline import retention

    need = retention.estimate(space, retention.local_running(space, resources, max_concurrent))
    echo(retention.check_disk(need, storage_path, warn, refuse=False))
