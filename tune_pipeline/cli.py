"""The `tune` command line.  Owns turning errors into one clear line and an
exit code: 0 done, 1 a run or some trials failed, 2 bad input, 130 interrupted."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer

from tune_pipeline.errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, RunFailed,
                                  UserError)

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
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
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
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
            raise fail("interrupted", EXIT_INTERRUPTED) from None
    return wrapper


def _epoch_line(m: dict, epochs: int) -> str:
    return (f"epoch {m['epoch']}/{epochs}  loss {m['train_loss']:.3f} acc {m['train_accuracy']:.1%}"
            f" | test loss {m['test_loss']:.3f} acc {m['test_accuracy']:.1%}"
            f" | lr {m['lr']:.3g} | {m['images_per_second']:.0f} img/s")


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="flat YAML of training keys (see README)"),
    output_dir: Path = typer.Option(Path("output"), "--output-dir", "-o", help="runs go to OUTPUT_DIR/<config name>/"),
    set_: List[str] = typer.Option([], "--set", help="override a key: --set learning_rate=0.01"),
    resume: bool = typer.Option(False, "--resume", help="continue the run's last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run of this name"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Train one configuration, without Ray."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tune_pipeline.config import load_config_file
    from tune_pipeline.run_output import RunDirectory
    from tune_pipeline.train import fit

    cfg = load_config_file(config, set_)
    run_dir = RunDirectory(output_dir / config.stem)
    resume_state = None
    if resume:
        if not run_dir.checkpoint.exists():
            raise UserError(f"{run_dir.path}: no checkpoint to resume (run without --resume)")
        resume_state = run_dir.load_checkpoint()
        cfg = resume_state["config"]  # the run continues exactly as it started
    elif run_dir.has_run() and not overwrite:
        raise UserError(f"{run_dir.path} already holds a run; pass --resume to continue it "
                        f"or --overwrite to start again")
    run_dir.start(cfg, resume_state["history"] if resume_state else [])

    progress = Progress(TextColumn("epoch {task.fields[epoch]}/" + str(cfg["epochs"])), BarColumn(),
                        MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                        disable=quiet or not sys.stderr.isatty(), console=None)
    task = progress.add_task("train", total=None, epoch=1)

    def on_batch(step: int, steps: int):
        progress.update(task, completed=step, total=steps)

    def on_epoch(metrics: dict, make_state):
        run_dir.record_epoch(metrics, make_state())
        progress.console.print(_epoch_line(metrics, cfg["epochs"]), soft_wrap=True)
        progress.update(task, completed=0, epoch=min(metrics["epoch"] + 1, cfg["epochs"]))

    try:
        with progress:
            result = fit(cfg, resume_state=resume_state, on_epoch=on_epoch, on_batch=on_batch)
    except RunFailed as exc:
        run_dir.finish({}, status="failed", error=str(exc))
        raise
    summary = run_dir.finish(result)
    typer.echo(f"done: {summary['epochs']} epochs, best test accuracy "
               f"{summary['best_test_accuracy']:.2%}, best test loss {summary['best_test_loss']:.4f} "
               f"-> {run_dir.path}")


@app.command()
def models():
    """List the registered models with their parameter counts."""
    from tune_pipeline.models import count_parameters, create_model, list_models

    for name in list_models():
        typer.echo(f"{name:<18} {count_parameters(create_model(name, num_classes=10)) / 1e6:7.2f}M parameters")


def _print_preview(space) -> None:
    from tune_pipeline.space import preview_configs

    typer.echo(f"{space.source}: method {space.method}, {space.trial_count()} trials, metric "
               f"{space.metric} ({'maximize' if space.mode == 'max' else 'minimize'}), scheduler "
               f"{space.scheduler['type']}, {space.resources['cpu']:g} CPU + {space.resources['gpu']:g} GPU per trial")
    if space.ignored:
        typer.echo(f"ignored keys (no meaning here): {', '.join(space.ignored)}")
    typer.echo("fixed: " + ", ".join(f"{k}={v}" for k, v in space.fixed.items()))
    for i, cfg in enumerate(preview_configs(space, 3), 1):
        typer.echo(f"trial {i}: " + (", ".join(f"{k}={cfg[k]}" for k in space.params) or "(no swept keys)"))


@app.command()
@user_errors
def search(
    space_file: Path = typer.Argument(..., metavar="SPACE.yaml", help="search space (wandb sweep format)"),
    name: Optional[str] = typer.Option(None, help="experiment name (default: <file>-<date-time>)"),
    storage_path: str = typer.Option("ray_results", help="where experiments live (a folder, or s3://... on a cluster)"),
    address: Optional[str] = typer.Option(None, help="attach to a running Ray cluster: auto or host:port"),
    cpus_per_trial: Optional[float] = typer.Option(None, min=0.01, help="CPUs per trial (overrides the file)"),
    gpus_per_trial: Optional[float] = typer.Option(None, min=0, help="GPUs per trial, fractions pack trials on a GPU"),
    max_concurrent: Optional[int] = typer.Option(None, min=1, help="at most this many trials at once"),
    num_samples: Optional[int] = typer.Option(None, min=1, help="samples (random/bayes) or grid repeats"),
    scheduler: Optional[str] = typer.Option(None, help="asha (early stopping) or fifo"),
    wandb: bool = typer.Option(False, "--wandb/--no-wandb", help="log trials to Weights & Biases (offline without a key)"),
    wandb_project: Optional[str] = typer.Option(None, help="wandb project (default: the file's project)"),
    set_: List[str] = typer.Option([], "--set", help="pin a parameter: --set epochs=2"),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and preview, start nothing"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Ray's own log"),
):
    """Run a sweep: one Ray Tune trial per configuration of SPACE.yaml."""
    from tune_pipeline.space import load_space

    if scheduler not in (None, "asha", "fifo"):
        raise UserError(f"--scheduler: must be asha or fifo, got {scheduler!r}")
    space = load_space(space_file, set_)
    if dry_run:
        _print_preview(space)
        return
    from tune_pipeline.progress import SweepConsole
    from tune_pipeline.sweep import SweepOptions, run_sweep

    options = SweepOptions(name=name, storage_path=storage_path, address=address,
                           cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                           max_concurrent=max_concurrent, num_samples=num_samples, scheduler=scheduler,
                           wandb=wandb, wandb_project=wandb_project, verbose=verbose,
                           overrides=tuple(set_))
    if space.ignored:
        SweepConsole().note(f"ignored keys (no meaning here): {', '.join(space.ignored)}")
    outcome = run_sweep(space, options, SweepConsole())
    raise typer.Exit(outcome.exit_code)


@app.command()
@user_errors
def resume(
    experiment_dir: Path = typer.Argument(..., help="the experiment folder `tune search` printed"),
    restart_errored: bool = typer.Option(False, "--restart-errored", help="run failed trials again from scratch"),
    address: Optional[str] = typer.Option(None, help="attach to a running Ray cluster: auto or host:port"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show Ray's own log"),
):
    """Continue an interrupted sweep; finished trials are never run again."""
    from tune_pipeline.progress import SweepConsole
    from tune_pipeline.sweep import resume_sweep

    outcome = resume_sweep(experiment_dir, restart_errored=restart_errored, address=address,
                           verbose=verbose, console=SweepConsole())
    raise typer.Exit(outcome.exit_code)


@app.command()
@user_errors
def export(
    experiment_dir: Path = typer.Argument(..., help="experiment folder"),
    format_: Optional[str] = typer.Option(None, "--format", "-f", help="md, csv, parquet or json (default: from --output, else md)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
    top: Optional[int] = typer.Option(None, min=1, help="only the N best trials"),
    metric: Optional[str] = typer.Option(None, help="rank by this metric (default: the sweep's)"),
):
    """The best-trial table of an experiment (finished, interrupted or running)."""
    from tune_pipeline.experiment import load_experiment
    from tune_pipeline.export import export as export_table, guess_format

    fmt = guess_format(output, format_)
    text = export_table(load_experiment(experiment_dir), fmt, output, metric, top)
    if text is not None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}", err=True)


@app.command()
@user_errors
def status(experiment_dir: Path = typer.Argument(..., help="experiment folder")):
    """Trials per state, the best so far, and why failed trials failed (reads disk only)."""
    from tune_pipeline.experiment import (FAILED_STATE, INTERRUPTED_STATE, RUNNING_STATE, describe_counts,
                                          load_experiment)
    from tune_pipeline.labels import describe, labellers, number

    exp = load_experiment(experiment_dir)
    total = max(exp.meta.get("trial_count") or 0, len(exp.trials))
    typer.echo(f"{exp.name}: {total} trials; "
               + (describe_counts(exp.state_counts()) or "none yet"))
    by = labellers((t.config for t in exp.trials), exp.swept)
    best = exp.best_trial()
    if best is not None:
        typer.echo(f"best so far: {best.trial_id} {exp.metric} {number(best.best_value(exp.metric, exp.mode), 4)} "
                   f"(epoch {best.epochs}, {exp.state(best)}) {describe(best.config, exp.swept, by)}")
    for trial in exp.trials:
        state = exp.state(trial)
        if state in (RUNNING_STATE, INTERRUPTED_STATE):
            typer.echo(f"{state} {trial.trial_id}: epoch {trial.epochs}/{trial.config.get('epochs', '?')}  "
                       f"{describe(trial.config, exp.swept, by)}")
        elif state == FAILED_STATE:
            where = f" ({trial.error_file})" if trial.error_file else ""
            typer.echo(f"failed {trial.trial_id}: {trial.error}{where}")
    if not exp.live and any(exp.state(t) == INTERRUPTED_STATE for t in exp.trials):
        typer.echo(f"continue with: tune resume {exp.path}")


@app.command()
@user_errors
def plot(
    experiment_dir: Path = typer.Argument(..., help="experiment folder"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="folder for the PNGs (default: EXPERIMENT_DIR/plots)"),
    metric: Optional[str] = typer.Option(None, help="plot this metric (default: the sweep's)"),
    top: int = typer.Option(5, min=1, help="highlight the N best trials"),
):
    """PNG plots: learning curves, parallel coordinates, parameter effects and importance."""
    from tune_pipeline.config import check_metric_name
    from tune_pipeline.experiment import load_experiment
    from tune_pipeline.plots import NothingToPlot, plot_all

    check_metric_name(metric)
    experiment = load_experiment(experiment_dir)
    try:
        written = plot_all(experiment, output or experiment.path / "plots", metric, top)
    except NothingToPlot as exc:
        raise RunFailed(f"nothing to plot: {exc} (see tune status {experiment.path})") from None
    for path in written.values():
        typer.echo(str(path))


@app.command()
@user_errors
def report(
    experiment_dir: Path = typer.Argument(..., help="experiment folder"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file (default: EXPERIMENT_DIR/report.html)"),
    metric: Optional[str] = typer.Option(None, help="rank and plot this metric (default: the sweep's)"),
    top: int = typer.Option(5, min=1, help="highlight the N best trials"),
):
    """One self-contained HTML report: table, plots, failures, search space."""
    from tune_pipeline.config import check_metric_name
    from tune_pipeline.experiment import load_experiment
    from tune_pipeline.report import write_report

    check_metric_name(metric)
    experiment = load_experiment(experiment_dir)
    path = write_report(experiment, output or experiment.path / "report.html", metric, top)
    typer.echo(str(path))


@app.command()
@user_errors
def dashboard(
    port: int = typer.Option(8265, help="dashboard port"),
    host: str = typer.Option("127.0.0.1", help="address the dashboard binds to"),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="permit a non-loopback --host"),
    stop: bool = typer.Option(False, "--stop", help="stop the Ray head `tune dashboard` started (only that one)"),
    show_token: bool = typer.Option(False, "--show-token", help="print the dashboard's login token too"),
):
    """Start (or find) a local Ray head with its dashboard and print the URL."""
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
    app(prog_name="tune")
