"""What a user sees of a sweep outside the table itself: the start-up steps
that take time ("starting Ray…"), notes, and the end (counts, the final
table, the winner, failures, where wandb's runs are); in a log (no terminal,
a dumb one, or one narrower than progress.MIN_TABLE_WIDTH) the live table's
place is taken by a line per finished epoch of each trial (at most one per
trial every EPOCH_LINE_SECONDS) and one per finished trial.  Ray's and
wandb's own output goes to the experiment's log file (`quiet_terminal`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from pathlib import Path

from tune_pipeline.progress import (MIN_TABLE_WIDTH, count_line, render_experiment, short_duration,
                                    trial_lines)
from tune_pipeline.storage import is_uri
from tune_pipeline.summary import winner_summary

PHASE_SECONDS = 1.0  # a start-up step that takes longer says what it is doing
LOG_FILE = "tune.log"  # Ray's and wandb's log lines, in the experiment folder
# The live tables (live_table.LiveTable) whose rich display is on, in this
# (driver) process: SweepConsole.close stops them all.
LIVE_TABLES: "weakref.WeakSet" = weakref.WeakSet()


class _Phase:
    """What a start-up step found, said when it ends (`detail`)."""
    detail = ""


class SweepConsole:
    """Writes the sweep's story to the terminal (stdout); notes to stderr."""

    # The experiment the last start() named: the live table's hint at
    # `tune status --wide` (a table Ray unpickled on resume has no other way to know).
    experiment_dir = None

    def __init__(self, stream=None, live: bool | None = None, console=None):
        self.stream = stream or (console.file if console is not None else sys.stdout)
        self._console = console
        self._lock = threading.Lock()
        self._forced = live
        self.live = self._can_show_table() if live is None else live

    def _can_show_table(self) -> bool:
        """A table needs a terminal that moves its cursor and is wide enough."""
        if self._console is not None:
            terminal = self._console.is_terminal and not self._console.is_dumb_terminal
        else:
            try:
                terminal = self.stream.isatty()
            except (AttributeError, ValueError):
                terminal = False
            terminal = terminal and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")
        return terminal and self._width() >= MIN_TABLE_WIDTH

    def _width(self) -> int:
        """The terminal's width: COLUMNS when set (as rich reads it), else the stream's own."""
        if os.environ.get("COLUMNS", "").isdigit() or self._console is not None:
            return self.rich.width
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return self.rich.width

    @property
    def rich(self):
        if self._console is None:
            from rich.console import Console
            self._console = Console(file=self.stream, force_terminal=True if self._forced else None,
                                    soft_wrap=False)
        return self._console

    def print(self, text: str = "") -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"note: {text}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def phase(self, text: str, seconds: float = PHASE_SECONDS):
        """A start-up step: once it has taken `seconds`, a line says what it
        is doing ("starting Ray…"), and when it ends, how long it took (with
        the `detail` the caller sets), so no wait is blank; a quick step says nothing."""
        said = threading.Event()
        step = _Phase()

        def say():
            with self._lock:
                if not said.is_set():
                    said.set()
                    print(f"{text}…", file=self.stream, flush=True)

        timer = threading.Timer(seconds, say)
        timer.daemon = True
        started = time.monotonic()
        if seconds > 0:
            timer.start()
        else:
            say()
        failed = True
        try:
            yield step
            failed = False
        finally:
            timer.cancel()
            with self._lock:
                quick = not said.is_set()
                said.set()  # a timer already firing says nothing now
            if not quick and not failed:  # a step that failed is the error line's to tell
                self.print(f"  {step.detail or 'done'} in {time.monotonic() - started:.1f} s")

    def start(self, name, experiment_dir, trial_count, resources, resumed=False) -> None:
        SweepConsole.experiment_dir = experiment_dir
        verb = "resuming" if resumed else "sweep"
        gpu = f" + {resources['gpu']:g} GPU" if resources.get("gpu") else ""
        self.print(f"{verb} {name}: {trial_count} trial{'s' if trial_count != 1 else ''}, {resources['cpu']:g} CPU{gpu} each -> {experiment_dir}")

    def close(self) -> None:
        """Stop every live table of this process: also the one Ray unpickled
        for `tune resume`, which no caller holds (see LiveTable.__setstate__)."""
        for table in list(LIVE_TABLES):
            table.stop()

    def finish(self, experiment, best, interrupted: bool, seconds: float) -> None:
        self.close()
        counts = experiment.state_counts()
        self.print(f"trials: {count_line(counts) or 'none'} in {short_duration(seconds)}")
        if experiment.trials:
            if self.rich.width >= MIN_TABLE_WIDTH:
                height = max(self.rich.height, 12) if self.live else None
                self.rich.print(render_experiment(experiment, self.rich.width, height))
            else:
                for line in trial_lines(experiment):
                    self.print(line)
        summary = winner_summary(experiment, best=best)
        # A terminal's width wraps the summary between words; a log keeps whole lines.
        for line in summary.lines(self.rich.width if self.rich.is_terminal else None) if summary else ():
            self.print(line)
        for trial in experiment.failed_trials():
            where = f" ({trial.error_file})" if trial.error_file else ""
            self.print(f"failed {trial.trial_id}: {trial.error}{where}")
        if experiment.record.wandb:
            self.print(wandb_line(experiment.path, experiment.record.wandb_project))
        self.print(f"experiment: {experiment.path}")
        if interrupted:
            self.print(f"interrupted: continue with `tune resume {experiment.path}`")


def wandb_line(experiment_dir, project: str | None) -> str:
    """What wandb kept, as found on disk now (not what was meant to happen)."""
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode == "disabled":
        return "wandb: disabled (WANDB_MODE=disabled): nothing was logged"
    project = project or "tune_pipeline"
    if is_uri(experiment_dir):
        # The logger runs in this driver and writes its runs to Ray's local
        # staging folder; only the experiment's own files go to the bucket.
        where = "this machine, under Ray's session folder (find /tmp/ray -path '*/wandb/*run-*')"
        if mode == "offline":
            return f"wandb: offline, runs on {where}; upload each with `wandb sync DIR`"
        return f"wandb: online, project {project} on wandb.ai (local copies on {where})"
    folder = Path(experiment_dir)
    if mode == "offline":
        runs = f"{folder}/trial_*/wandb/offline-run-*"
        count = len(list(folder.glob("trial_*/wandb/offline-run-*")))
        if not count:
            return f"wandb: offline, but no run was written (nothing matches {runs}; see {folder / LOG_FILE})"
        return f"wandb: offline, {count} run{'s' if count != 1 else ''} in {runs}; upload them with `wandb sync {runs}`"
    count = len(list(folder.glob("trial_*/wandb/run-*")))
    return (f"wandb: online, project {project} on wandb.ai; {count} local cop{'ies' if count != 1 else 'y'} "
            f"in {folder}/trial_*/wandb/run-*")


@contextlib.contextmanager
def quiet_terminal(log_path: Path | None, verbose: bool):
    """Everything written to file descriptor 2 (Ray's and wandb's log lines,
    from Python or C++) goes to `log_path`; our own notes and errors keep the
    terminal through a new sys.stderr."""
    if verbose or log_path is None:
        yield
        return
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 2)
    old_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr.close()
        sys.stderr = old_stderr
