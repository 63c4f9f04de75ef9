"""`tune train`'s use case: one configuration trained without Ray, from a
config file or an experiment's trial (its best finished one, or one named;
a PBT trial with the schedule it followed), into a run folder
(run_output.py) that `--resume` continues, with a progress bar, a line per
epoch, and the run's end recorded whatever stopped it."""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tune_pipeline.errors import RunFailed, UserError, written


@dataclass
class TrainOptions:
    config: Path | None = None        # a flat YAML of training keys, or
    from_experiment: str | None = None  # an experiment (folder or s3://...): its best trial's config
    trial: str | None = None          # with from_experiment: this trial instead of the best
    epochs: int | None = None
    full_train: bool = False          # train on train + validation (val_fraction 0)
    output_dir: Path = Path("output")
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False


def _print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run_training(options: TrainOptions, echo: Callable[[str], None] = print,
                 note: Callable[[str], None] = _print_to_stderr) -> dict:
    """Train `options`' configuration; the run's summary (summary.json).
    `echo` says what the run is and how it ended; `note` what the user should know."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tune_pipeline.config import load_config_file, parse_set_option, validate_config
    from tune_pipeline.metrics import fmt
    from tune_pipeline.run_output import RunDirectory
    from tune_pipeline.train import fit
    from tune_pipeline.watchdog import TrialStalled, Watchdog, epoch_seconds

    config, from_, trial, epochs = options.config, options.from_experiment, options.trial, options.epochs
    full_train, resume, overwrite = options.full_train, options.resume, options.overwrite
    changes = [flag for flag, given in (("--set", options.overrides), ("--epochs", epochs is not None),
                                        ("--full-train", full_train)) if given]
    if resume and changes:
        # The run continues exactly as it started; a changed key would be silently ignored.
        raise UserError(f"{' and '.join(changes)} cannot change a resumed run (it continues with its "
                        f"saved config); start a new run with --overwrite, or under another name")
    if resume and overwrite:
        raise UserError("--resume and --overwrite: choose one")
    if (config is None) == (from_ is None):
        raise UserError("give a config file or --from EXPERIMENT_DIR (one of the two)")
    if trial is not None and from_ is None:
        raise UserError("--trial needs --from EXPERIMENT_DIR")
    overrides = list(options.overrides)
    if epochs is not None:
        overrides.append(f"epochs={epochs}")
    if full_train:
        overrides.append("val_fraction=0")
    source = schedule = None
    if from_ is not None:
        raw, run_name, source = config_from_experiment(from_, trial, overrides, note)
        schedule = schedule_from_experiment(from_, trial, raw)
        pinned = sorted(set(parse_set_option(overrides)) & {k for s in schedule or [] for k in s} - {"epoch"})
        if pinned:
            raise UserError(f"--set {', '.join(pinned)}: the schedule PBT found changes "
                            f"{' and '.join(pinned)} during the run; train it as found, or pick a config file")
        raw.update(parse_set_option(overrides))
        cfg = validate_config(raw, source=f"{from_} trial config")
        run_name += "-full" if full_train else ""
    else:
        cfg = load_config_file(config, overrides)
        run_name = config.stem
    run_dir = RunDirectory(options.output_dir / run_name)
    resume_state = None
    if resume:
        if not run_dir.checkpoint.exists():
            raise UserError(f"{run_dir.path}: no checkpoint to resume (run without --resume)")
        resume_state = run_dir.load_checkpoint()
        cfg = resume_state["config"]  # the run continues exactly as it started
    elif run_dir.has_run() and not overwrite:
        raise UserError(f"{run_dir.path} already holds a run; pass --resume to continue it "
                        f"or --overwrite to start again")
    elif overwrite:
        written(run_dir.path, run_dir.clear)
    if source:
        echo(f"training {source} for {cfg['epochs']} epochs" + (" on train + validation" if full_train else ""))
        if schedule:
            from tune_pipeline.pbt import describe_schedule
            echo(f"following the schedule PBT found: {describe_schedule(schedule)}")
    written(run_dir.path, lambda: run_dir.start(cfg, resume_state["history"] if resume_state else []))

    progress = Progress(TextColumn("epoch {task.fields[epoch]}/" + str(cfg["epochs"])), BarColumn(),
                        MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                        disable=options.quiet or not sys.stderr.isatty(), console=None)
    task = progress.add_task("train", total=None, epoch=1)

    watchdog = Watchdog(cfg["trial_timeout"], earlier_epochs=epoch_seconds(resume_state))

    def on_batch(step: int, steps: int):
        watchdog.batch_done(step, steps)
        progress.update(task, completed=step, total=steps)

    def on_epoch(metrics: dict, make_state):
        run_dir.record_epoch(metrics, make_state())
        progress.console.print(epoch_line(metrics, cfg["epochs"]), soft_wrap=True)
        progress.update(task, completed=0, epoch=min(metrics["epoch"] + 1, cfg["epochs"]))

    def record_end(status: str, error: str | None = None) -> None:
        try:
            run_dir.finish(run_dir.partial_result(), status=status, error=error,
                           val_fraction=cfg["val_fraction"])
        except OSError as exc:  # a full or read-only disk: the run's own error says more
            note(f"could not write {run_dir.path / 'summary.json'} ({exc.strerror or exc})")

    try:
        with progress:
            result = watchdog.run(lambda: fit(cfg, resume_state=resume_state, on_batch=on_batch, schedule=schedule,
                                              on_epoch=lambda m, state: (on_epoch(m, state), watchdog.beat())))
    except TrialStalled as exc:
        record_end("failed", str(exc))
        raise RunFailed(str(exc)) from None
    except KeyboardInterrupt:
        record_end("interrupted")
        raise
    except (RunFailed, UserError) as exc:
        record_end("failed", str(exc))
        raise
    except Exception as exc:  # a transform script's bug, a library's, a full disk: recorded, then one line
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
            reason = f"cannot write {exc.filename or run_dir.path} ({exc.strerror or exc})"
        else:
            reason = f"{type(exc).__name__}: {exc}{where_raised(exc)}"
        record_end("failed", reason)
        raise RunFailed(f"the run failed: {reason}") from None
    summary = written(run_dir.path, lambda: run_dir.finish(result, source=source, val_fraction=cfg["val_fraction"]))
    echo(f"done: {summary['epochs']} epochs, best test accuracy "
         f"{fmt('best_test_accuracy', summary['best_test_accuracy'])}, best test loss "
         f"{fmt('best_test_loss', summary['best_test_loss'])} -> {run_dir.path}")
    final = summary["final"]
    echo(f"final model: test accuracy {fmt('test_accuracy', final.get('test_accuracy'))} at epoch "
         f"{final.get('epoch')} (the last; no epoch was chosen by its test score) -> {run_dir.model_file}")
    return summary


def epoch_line(m: dict, epochs: int) -> str:
    from tune_pipeline.metrics import fmt

    def pair(split: str) -> str:
        return f"loss {fmt(f'{split}_loss', m[f'{split}_loss'])} acc {fmt(f'{split}_accuracy', m[f'{split}_accuracy'])}"

    parts = [pair("train")] + [f"{s} {pair(s)}" for s in ("val", "test") if f"{s}_loss" in m]
    return (f"epoch {m['epoch']}/{epochs}  " + " | ".join(parts)
            + f" | lr {fmt('lr', m['lr'])} | {fmt('images_per_second', m['images_per_second'])} img/s")


def config_from_experiment(experiment_dir: str, trial_id: str | None, overrides: list[str] = (),
                           note: Callable[[str], None] = _print_to_stderr) -> tuple[dict, str, str]:
    """(the trial's training keys, a run name, a line saying what was chosen and how);
    `overrides`: the run's --set values, applied by the caller."""
    from tune_pipeline.compile_policy import compiled_as_run
    from tune_pipeline.config import FIELDS
    from tune_pipeline.experiment import FINISHED, load_experiment
    from tune_pipeline.metrics import QUOTED, fmt, quoted_accuracy, selection_note

    exp = load_experiment(experiment_dir)
    for message in exp.notes:  # damaged files skipped while reading it
        note(message)
    metric, mode = exp.metric, exp.mode
    if trial_id is None:
        # A finished trial (or one ASHA stopped early): a failed or interrupted
        # one is trained only when named, so a crash is never silently the winner.
        ranked = exp.ranked()
        done = [t for t in ranked if t.status == FINISHED]
        if not done:
            if not ranked:
                raise UserError(f"{exp.path}: no trial has reported {metric} yet (see tune status {exp.path})")
            best = ranked[0]
            raise UserError(f"{exp.path}: no trial finished; the best that reported is {best.trial_id} "
                            f"({exp.state(best)} at epoch {best.epochs}, {metric} "
                            f"{fmt(metric, best.best_value(metric, mode))}): train it with "
                            f"--from {experiment_dir} --trial {best.trial_id}")
        chosen = done[0]
        how = f"best finished by {metric} {fmt(metric, chosen.best_value(metric, mode))}, {selection_note(metric)}"
    else:
        matches = [t for t in exp.trials if t.trial_id == trial_id]
        if not matches:
            raise UserError(f"--trial: {exp.path} has no trial {trial_id!r}; its trials are "
                            f"{', '.join(t.trial_id for t in exp.trials) or 'none'}")
        chosen, how = matches[0], "named by --trial"
    # Training keys only: an experiment from an older version may hold keys since dropped.
    raw = {k: v for k, v in chosen.config.items() if k in FIELDS}
    # The sweep's time limit was for a sweep's trial, not for this run (often
    # longer: --epochs); `--set trial_timeout=N` asks for one.
    dropped = raw.pop("trial_timeout", 0)
    # `compile: auto` was resolved by the trial (trainable.train_trial), which
    # reports what it chose: train what it trained.
    compiled = compiled_as_run(chosen.history)
    if compiled is not None:
        raw["compile"] = compiled
    quoted = quoted_accuracy(chosen.history, metric, mode)
    line = (f"from {exp.name} trial {chosen.trial_id} ({how}; its {QUOTED} {fmt(QUOTED, quoted)})")
    if dropped and not any(o.split("=", 1)[0].strip() == "trial_timeout" for o in overrides):
        note(f"the sweep's trial_timeout of {dropped:g} s is not applied to this run "
             f"(--set trial_timeout={dropped:g} keeps it)")
    return raw, f"{exp.name}-{chosen.trial_id}", line


def schedule_from_experiment(experiment_dir: str, trial_id: str | None, raw: dict) -> list[dict] | None:
    """A PBT trial's schedule: the values that trained its selected epoch's
    model, epoch by epoch, with `raw` set to the values it started from."""
    from tune_pipeline.experiment import load_experiment
    from tune_pipeline.metrics import best_epoch
    from tune_pipeline.pbt import is_pbt, schedule_of, start_of

    exp = load_experiment(experiment_dir)
    if not is_pbt(exp.record):
        return None
    chosen = exp.best_trial() if trial_id is None else next(t for t in exp.trials if t.trial_id == trial_id)
    row = best_epoch(chosen.history, exp.metric, exp.mode) or chosen.last
    if isinstance(row.get("config"), dict):  # PBT changed the trial's config: the one of that epoch
        raw.update({k: v for k, v in row["config"].items() if k in exp.swept})
    schedule = schedule_of(row)
    if schedule:
        raw.update(start_of(schedule))
    return schedule


def where_raised(exc: BaseException) -> str:
    """' (at file:line)' of the innermost frame: usually the user's transform script."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})" if tb is not None else ""
