"""The `tune` command line.  Owns turning errors into one clear line and an
exit code: 0 done, 1 a run or some trials failed, 2 bad input, 130 interrupted
(Ctrl-C or SIGTERM).  Also what happens when standard output cannot be
written (a full disk, a closed pipe): the command does its work, says so in
one line on stderr, and exits 1 (main)."""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from tune_pipeline.command_process import interrupted_by_sigterm
from tune_pipeline.cpu_share import share_the_cpu
from tune_pipeline.errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, RunFailed,
                                  UserError, shorten, written)

# The argument and options that every reader of an experiment takes, worded once.
ExperimentDir = Annotated[str, typer.Argument(metavar="EXPERIMENT_DIR",
                                              help="experiment folder, or its URI (s3://bucket/prefix/NAME)")]
TopTrials = Annotated[int, typer.Option(min=1, metavar="N", help="highlight the N best trials")]

app = typer.Typer(
    # Click's plain help: `--scheduler [asha|fifo]`, flags without a type, each
    # option's help beside it (rich's panel gave the help a 20-column strip at 80).
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    help="Hyperparameter sweeps for image classifiers on Ray Tune.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from tune_pipeline import __version__
        typer.echo(f"tune_pipeline {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """Hyperparameter sweeps for image classifiers on Ray Tune."""


def fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {shorten(message)}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def user_errors(fn):
    """Turn the project's exceptions into one line on stderr and an exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise fail(exc.one_line(), EXIT_BAD_INPUT) from None
        except RunFailed as exc:
            raise fail(str(exc), EXIT_FAILED) from None
        except KeyboardInterrupt:
            by = " by SIGTERM" if interrupted_by_sigterm() else ""
            raise fail(f"interrupted{by}", EXIT_INTERRUPTED) from None
    return wrapper


def note(message: str) -> None:
    typer.secho(f"note: {message}", err=True, fg=typer.colors.YELLOW)


def terminal_width() -> int | None:
    """The width of the terminal standard output is, or None for a file or pipe."""
    import shutil

    try:
        return shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    except (AttributeError, ValueError):
        return None


def check_output_file(path: Path, option: str = "--output", make_parent: bool = False) -> None:
    """Before any work: an output file whose folder exists (or may be made) and
    that is not itself a folder, so a long export or report never ends in a traceback."""
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    from tune_pipeline.storage import check_folder_path

    parent = path.parent if str(path.parent) else Path(".")
    existing = check_folder_path(parent, option, named=path)
    if existing != parent and not make_parent:
        raise UserError(f"{option} {path}: folder {parent} does not exist")


def check_output_folder(path: Path, option: str = "--output") -> None:
    from tune_pipeline.storage import check_folder_path

    check_folder_path(path, option)


def load_experiment_noted(experiment_dir):
    """The experiment, with a note for each damaged file skipped while reading it."""
    from tune_pipeline.experiment import load_experiment

    experiment = load_experiment(experiment_dir)
    for message in experiment.notes:
        note(message)
    return experiment


@app.command()
@user_errors
def train(
    config: Optional[Path] = typer.Argument(None, metavar="CONFIG.yaml", help="flat YAML of training keys (see README); or use --from"),
    from_: Optional[str] = typer.Option(None, "--from", metavar="EXPERIMENT", help="an experiment (folder or s3://...): train its best trial's config"),
    trial: Optional[str] = typer.Option(None, "--trial", metavar="TRIAL_ID", help="with --from: this trial instead of the best"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, metavar="N", help="train this many epochs (e.g. longer than the sweep)"),
    full_train: bool = typer.Option(False, "--full-train", help="train on train + validation (val_fraction 0)"),
    output_dir: Path = typer.Option(Path("output"), "--output-dir", "-o", metavar="DIR", help="runs go to OUTPUT_DIR/<config name>/"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="override a key: --set learning_rate=0.01"),
    resume: bool = typer.Option(False, "--resume", help="continue the run's last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run of this name"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Train one configuration, without Ray: a YAML file, or a sweep's winner (--from)."""
    share_the_cpu()  # before torch loads (cpu_share.py)
    from tune_pipeline.single_run import TrainOptions, run_training

    check_output_folder(output_dir, "--output-dir")
    run_training(TrainOptions(config=config, from_experiment=from_, trial=trial, epochs=epochs,
                              full_train=full_train, output_dir=output_dir, overrides=list(set_),
                              resume=resume, overwrite=overwrite, quiet=quiet),
                 echo=typer.echo, note=note)


@app.command()
@user_errors
def examples(folder: Path = typer.Argument(Path("tune_examples"), metavar="FOLDER",
                                           help="where to write them (made if missing)")):
    """Copy the shipped search spaces and transform scripts into FOLDER, to edit."""
    from tune_pipeline.shipped import example_spaces, write_examples

    check_output_folder(folder, "FOLDER")
    written_files = written(folder, lambda: write_examples(folder))
    for path in written_files:
        typer.echo(str(path))
    if not written_files:
        typer.echo(f"{folder} holds them all already (nothing overwritten)", err=True)
    else:
        typer.echo(f"run one: tune search {folder / example_spaces()[-1]}.yaml "
                   f"(a shipped space also runs by name: tune search {example_spaces()[-1]})", err=True)


@app.command()
def models():
    """List the registered models with their parameter counts."""
    from tune_pipeline.models import count_parameters, create_model, list_models

    for name in list_models():
        typer.echo(f"{name:<18} {count_parameters(create_model(name, num_classes=10)) / 1e6:7.2f}M parameters")


@app.command()
@user_errors
def search(
    space_file: Path = typer.Argument(..., metavar="SPACE.yaml", help="search space (wandb sweep format), or a shipped one by name, e.g. quickstart (tune examples copies them all)"),
    name: Optional[str] = typer.Option(None, metavar="NAME", help="experiment name (default: <file>-<date-time>)"),
    storage_path: str = typer.Option("ray_results", metavar="DIR|URI", help="where experiments live (a folder, or s3://... on a cluster)"),
    address: Optional[str] = typer.Option(None, metavar="auto|HOST:PORT", help="attach to a running Ray cluster"),
    cpus_per_trial: Optional[float] = typer.Option(None, min=0.01, metavar="N", help="CPUs per trial (overrides the file)"),
    gpus_per_trial: Optional[float] = typer.Option(None, min=0, metavar="F", help="GPUs per trial, fractions pack trials on a GPU"),
    max_concurrent: Optional[int] = typer.Option(None, min=1, metavar="N", help="at most this many trials at once"),
    num_samples: Optional[int] = typer.Option(None, min=1, metavar="N", help="samples (random/bayes) or grid repeats"),
    scheduler: Optional[str] = typer.Option(None, metavar="[asha|fifo]", help="asha: early stopping; fifo: every trial runs all its epochs"),
    wandb: bool = typer.Option(False, "--wandb/--no-wandb", help="log trials to Weights & Biases (offline without a key)"),
    wandb_project: Optional[str] = typer.Option(None, metavar="NAME", help="wandb project (default: the file's project)"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="pin a parameter: --set epochs=2 (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and preview, start nothing"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Ray's own log"),
):
    """Run a sweep: one Ray Tune trial per configuration of SPACE.yaml."""
    if not dry_run:  # a dry run trains nothing: no 0.2 s load probe
        share_the_cpu()  # before torch loads (cpu_share.py); a local Ray's workers inherit it
    from tune_pipeline.space import load_space
    from tune_pipeline.tune_adapter import check_tune

    if scheduler not in (None, "asha", "fifo"):
        raise UserError(f"--scheduler: must be asha or fifo, got {scheduler!r}")
    from tune_pipeline.experiment_record import check_name, resume_warning
    from tune_pipeline.ray_session import check_resources

    space = load_space(space_file, set_, scheduler=scheduler, num_samples=num_samples)
    check_tune(space)  # what Ray or Optuna would refuse, refused before the preview or the run
    overridden = {k: v for k, v in (("cpu", cpus_per_trial), ("gpu", gpus_per_trial)) if v is not None}
    resources = {**space.resources, **overridden}
    check_resources(resources, "resources")
    if name is not None:
        check_name(name)
    warning = resume_warning(space)
    if dry_run:
        from tune_pipeline.dry_run import print_preview

        print_preview(space, resources, max_concurrent, storage_path, echo=typer.echo,
                      warn=lambda m: typer.secho(f"warning: {m}", err=True, fg="yellow"))
        if warning:
            typer.secho(f"warning: {warning}", err=True, fg="yellow")
        return
    from tune_pipeline.sweep_console import SweepConsole
    from tune_pipeline.sweep import SweepOptions, run_sweep

    if warning:
        SweepConsole().note(warning)

    options = SweepOptions(name=name, storage_path=storage_path, address=address,
                           cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                           max_concurrent=max_concurrent, wandb=wandb, wandb_project=wandb_project, verbose=verbose,
                           overrides=tuple(set_))
    from tune_pipeline.dry_run import describe_space

    for line in describe_space(space, resources)[1:]:
        typer.echo(line, err=True)
    outcome = run_sweep(space, options, SweepConsole())
    raise typer.Exit(outcome.exit_code)


@app.command()
@user_errors
def resume(
    experiment_dir: ExperimentDir,
    restart_errored: bool = typer.Option(False, "--restart-errored", help="run failed trials again from scratch"),
    address: Optional[str] = typer.Option(None, metavar="auto|HOST:PORT", help="attach to a running Ray cluster"),
    more: Optional[int] = typer.Option(None, "--more", min=1, metavar="N", help="add N trials (random, bayes) or N repeats (grid)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Ray's own log"),
):
    """Continue an interrupted sweep (finished trials are never run again), or add trials to one."""
    share_the_cpu()  # before torch loads (cpu_share.py); a local Ray's workers inherit it
    from tune_pipeline.sweep_console import SweepConsole
    from tune_pipeline.sweep import resume_sweep

    outcome = resume_sweep(experiment_dir, restart_errored=restart_errored, address=address,
                           verbose=verbose, console=SweepConsole(), more=more or 0)
    raise typer.Exit(outcome.exit_code)


@app.command()
@user_errors
def export(
    experiment_dir: ExperimentDir,
    format_: Optional[str] = typer.Option(None, "--format", "-f", metavar="[md|csv|parquet|json]", help="default: from --output's extension, else md"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="file to write (default: stdout)"),
    top: Optional[int] = typer.Option(None, min=1, metavar="N", help="only the N best trials"),
    metric: Optional[str] = typer.Option(None, metavar="METRIC", help="rank by this metric (default: the sweep's)"),
    group: bool = typer.Option(False, "--group", help="one row per configuration: repeats as mean ± std"),
):
    """The best-trial table of an experiment (finished, interrupted or running)."""
    from tune_pipeline.export import export as export_table, guess_format

    fmt = guess_format(output, format_)
    if output is not None:
        check_output_file(output)
    experiment = load_experiment_noted(experiment_dir)
    text = written(output, lambda: export_table(experiment, fmt, output, metric, top, group))
    if text is not None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}", err=True)


@app.command()
@user_errors
def status(
    experiment_dir: ExperimentDir,
    wide: bool = typer.Option(False, "--wide", help="every swept value in the table, however wide"),
):
    """Trials per state, the table of trials, the best trial, and why failed
    trials failed (reads disk only)."""
    from rich.console import Console

    from tune_pipeline.experiment import FAILED_STATE, INTERRUPTED_STATE, NEVER_STARTED, RUNNING_STATE
    from tune_pipeline.labels import describe, labellers
    from tune_pipeline.progress import MIN_TABLE_WIDTH, count_line, render_experiment, trial_lines
    from tune_pipeline.summary import winner_summary

    exp = load_experiment_noted(experiment_dir)
    total = max(exp.record.trial_count or 0, len(exp.trials))
    if not exp.started and not exp.live:
        typer.echo(f"{exp.name}: {total} trials; {NEVER_STARTED}")
        typer.echo(f"start it with: tune resume {exp.path}")
        return
    typer.echo(f"{exp.name}: {total} trials; " + (count_line(exp.state_counts()) or "none yet"))
    if exp.trials:
        # --wide: lines as long as the table needs (for a pager or a file), every row.
        console = Console(width=10 ** 4) if wide else Console()
        if wide or console.width >= MIN_TABLE_WIDTH:
            height = max(console.height, 12) if console.is_terminal and not wide else None
            console.print(render_experiment(exp, console.width, height, wide=wide))
        else:
            for line in trial_lines(exp):
                typer.echo(line)
    summary = winner_summary(exp)
    for line in summary.lines(terminal_width()) if summary else ():
        typer.echo(line)
    _print_schedules(exp)
    by = None  # labels of every trial's values: only for the lines that show them
    for trial in exp.trials:
        state = exp.state(trial)
        if state in (RUNNING_STATE, INTERRUPTED_STATE):
            by = by or labellers((t.config for t in exp.trials), exp.swept)
            typer.echo(f"{state} {trial.trial_id}: epoch {trial.epochs}/{trial.config.get('epochs', '?')}  "
                       f"{describe(trial.config, exp.swept, by)}")
        elif state == FAILED_STATE:
            where = f" ({trial.error_file})" if trial.error_file else ""
            typer.echo(f"failed {trial.trial_id}: {trial.error}{where}")
    if exp.live:
        from tune_pipeline.lock import ExperimentLock, describe_holder

        typer.echo(f"driver: {describe_holder(ExperimentLock(exp.path).holder())}")
    elif any(exp.state(t) == INTERRUPTED_STATE for t in exp.trials):
        typer.echo(f"continue with: tune resume {exp.path}")


def _print_schedules(exp) -> None:
    """Under PBT, the values each trial's current model was trained with, epoch by epoch."""
    from tune_pipeline.pbt import describe_schedule, is_pbt, schedule_of

    if not is_pbt(exp.record):
        return
    lines = [(t.trial_id, describe_schedule(schedule_of(t.last))) for t in exp.trials]
    changed = [(i, text) for i, text in lines if text]
    typer.echo(f"pbt schedules: {len(changed)} of {len(lines)} trials changed values"
               + (" (epochs done when each took effect):" if changed else ""))
    for trial_id, text in changed:
        typer.echo(f"  {trial_id}: {text}")


@app.command()
@user_errors
def plot(
    experiment_dir: ExperimentDir,
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="DIR", help="folder for the PNGs (default: EXPERIMENT_DIR/plots; ./NAME/plots for a remote one)"),
    metric: Optional[str] = typer.Option(None, metavar="METRIC", help="plot this metric (default: the sweep's)"),
    top: TopTrials = 5,
):
    """PNG plots: learning curves, parallel coordinates, parameter effects and importance."""
    from tune_pipeline.config import check_metric_name
    from tune_pipeline.plots import NothingToPlot, plot_all
    from tune_pipeline.storage import local_output

    check_metric_name(metric)
    if output is not None:
        check_output_folder(output)
    experiment = load_experiment_noted(experiment_dir)
    folder = output or local_output(experiment.path, "plots")
    try:
        pictures = written(folder, lambda: plot_all(experiment, folder, metric, top))
    except NothingToPlot as exc:
        raise RunFailed(f"nothing to plot: {exc} (see tune status {experiment.path})") from None
    for path in pictures.values():
        typer.echo(str(path))


@app.command()
@user_errors
def report(
    experiment_dir: ExperimentDir,
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="HTML file (default: EXPERIMENT_DIR/report.html; ./NAME/report.html for a remote one)"),
    metric: Optional[str] = typer.Option(None, metavar="METRIC", help="rank and plot this metric (default: the sweep's)"),
    top: TopTrials = 5,
):
    """One self-contained HTML report: table, plots, failures, search space."""
    from tune_pipeline.config import check_metric_name
    from tune_pipeline.report import write_report
    from tune_pipeline.summary import winner_summary
    from tune_pipeline.storage import local_output

    check_metric_name(metric)
    if output is not None:
        check_output_file(output, make_parent=True)
    experiment = load_experiment_noted(experiment_dir)
    target = output or local_output(experiment.path, "report.html")
    path = written(target, lambda: write_report(experiment, target, metric, top))
    summary = winner_summary(experiment, metric)
    for line in summary.lines(terminal_width()) if summary else ():
        typer.echo(line)
    typer.echo(str(path))


@app.command()
@user_errors
def dashboard(
    port: int = typer.Option(8265, metavar="PORT", help="dashboard port"),
    host: str = typer.Option("127.0.0.1", metavar="HOST", help="address the head binds to, every port (loopback by default)"),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="permit a non-loopback --host"),
    stop: bool = typer.Option(False, "--stop", help="stop the Ray head `tune dashboard` started (only that one)"),
    show_token: bool = typer.Option(False, "--show-token", help="print the dashboard's login token too"),
):
    """Start a local Ray head with its dashboard (or find the one it started) and print the URL."""
    from tune_pipeline.cluster import TOKEN_COMMAND, auth_token, needs_token, start_dashboard, stop_head

    if stop:
        code, message = stop_head()
        if code:
            raise fail(message, code)
        typer.echo(message)
        return
    url, started = start_dashboard(host, port, allow_remote, warn=lambda m: typer.secho(m, err=True, fg="yellow"))
    typer.echo(f"{'started' if started else 'found'} Ray head; dashboard: {url}")
    if needs_token(url):
        token = auth_token() if show_token else None
        typer.echo(f"log in with the token: {token}" if token else
                   f"the dashboard asks for a token: `{TOKEN_COMMAND}` prints it (or add --show-token)")
    typer.echo("sweeps on this machine run on it: tune search SPACE.yaml (or --address auto)")
    if started:
        typer.echo("stop it with: tune dashboard --stop")


def main() -> None:
    from tune_pipeline.command_process import GuardedOutput, exit_now, terminate_as_interrupt

    output = GuardedOutput(sys.stdout)
    sys.stdout = output
    signal.signal(signal.SIGTERM, terminate_as_interrupt)
    # `tune` or `tune-pipeline` (the same command under a name Ray's own `tune` script cannot take).
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    try:
        app(prog_name="tune-pipeline" if invoked == "tune-pipeline" else "tune")
    except SystemExit as exc:  # typer always ends this way; the code is what the shell sees
        code = exc.code
    else:
        code = 0
    if not isinstance(code, (int, type(None))):  # sys.exit("message") prints it and exits 1
        print(code, file=sys.stderr)
        code = 1
    output.flush()
    if output.lost is not None:
        typer.secho(f"error: {output.message()}", err=True, fg=typer.colors.RED)
        code = code or EXIT_FAILED
    exit_now(code or 0)
