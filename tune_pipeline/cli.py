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


def main() -> None:
    app(prog_name="tune")
