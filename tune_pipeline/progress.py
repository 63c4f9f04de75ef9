"""What a user sees while a sweep runs: a live table of trials that fits the
terminal, or, in a log (no TTY), a line per finished epoch of each trial (at
most one per trial every EPOCH_LINE_SECONDS) and one per finished trial; then
the final summary.  Ray's own output goes to the experiment's log file.

The table fits the terminal's width by giving up, in this order: the full
trial id (its distinguishing part stays), the last-epoch column, one-line
headers of the swept columns (they wrap at `_`), the planned epochs in the
epoch column, and the trial column.  Swept values are never cut.  More trials than
rows: the running ones and the best are shown, then "… N more".
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from tune_pipeline.experiment import (FAILED_STATE, FINISHED_STATE, PENDING_STATE,
                                      RUNNING_STATE, STATES, STOPPED_STATE, _error_reason,
                                      describe_counts, state_name)
from tune_pipeline.labels import Labeller, describe, labellers
from tune_pipeline.metrics import ORIGINAL_COLUMNS, QUOTED, fmt, quoted_accuracy, selection_note

REFRESH_SECONDS = 1.0
EPOCH_LINE_SECONDS = 30.0  # in a log: at most one epoch line per trial this often
DONE_STATES = (FINISHED_STATE, STOPPED_STATE, FAILED_STATE)
LOG_FILE = "tune.log"  # Ray's and wandb's log lines, in the experiment folder


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class Row:
    """One trial as the table shows it, from Ray's live trial or from disk."""
    trial_id: str
    state: str
    config: dict
    epoch: int
    last: float | None  # the metric at the last epoch
    best: float | None  # its best value so far


def rows_from_ray(trials, metric: str, best: dict[str, float]) -> list[Row]:
    """`best`: each trial's best value of `metric` seen so far (LiveTable keeps it)."""
    rows = []
    for t in trials:
        result = t.last_result or {}
        epoch = int(result.get("epoch", 0) or 0)
        rows.append(Row(t.trial_id, state_name(t.status, epoch, t.config.get("epochs"), live=True), t.config,
                        epoch, result.get(metric), best.get(t.trial_id)))
    return rows


def rows_from_experiment(experiment, metric: str | None = None) -> list[Row]:
    metric = metric or experiment.metric
    mode = experiment.mode_for(metric)
    return [Row(t.trial_id, experiment.state(t), t.config, t.epochs, t.last.get(metric),
                t.best_value(metric, mode)) for t in experiment.trials]


def choose_rows(rows: list[Row], mode: str, room: int) -> tuple[list[Row], list[Row]]:
    """The running trials, then the best others, as many as `room` allows."""
    def score(row):
        if row.best is None:
            return float("-inf")
        return row.best if mode == "max" else -row.best

    running = sorted((r for r in rows if r.state == RUNNING_STATE), key=score, reverse=True)
    done = sorted((r for r in rows if r.state != RUNNING_STATE and r.state != PENDING_STATE),
                  key=score, reverse=True)
    pending = [r for r in rows if r.state == PENDING_STATE]
    ordered = running + done + pending
    if len(ordered) <= room:
        return ordered, []
    room = max(room - 1, 1)  # one line for "… N more"
    return ordered[:room], ordered[room:]


def _wrap_header(name: str, width: int) -> str:
    """`runtime_transform_script` as lines no wider than `width`, broken after `_`."""
    lines, line = [], ""
    for part in name.replace("_", "_\0").split("\0"):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join(lines + [line])


def render(rows: list[Row], swept: list[str], metric: str, mode: str, width: int, height: int | None,
           header: str = ""):
    """A rich renderable: the header line, the table, and "… N more"."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    by = labellers((r.config for r in rows), swept)
    ids = Labeller(r.trial_id for r in rows)
    planned = {r.trial_id: r.config.get("epochs") for r in rows}
    room = max((height or 10 ** 6) - 6, 3)  # header, column titles (up to 3 lines), "… more", prompt
    shown, hidden = choose_rows(rows, mode, room)
    short_metric = metric.replace("accuracy", "acc")

    def cells(full_id: bool, last: bool, of_planned: bool) -> dict[str, list[str]]:
        columns = {"trial": [r.trial_id if full_id else ids(r.trial_id) for r in shown],
                   "state": [r.state for r in shown]}
        for k in swept:
            columns[k] = [by[k](r.config.get(k)) for r in shown]
        columns["epoch"] = [(f"{r.epoch}/{planned[r.trial_id]}" if of_planned and planned[r.trial_id]
                             else str(r.epoch)) if r.state != PENDING_STATE else "-" for r in shown]
        if last:
            columns[short_metric] = [fmt(metric, r.last) for r in shown]
        columns[f"best {short_metric}"] = [fmt(metric, r.best) for r in shown]
        return columns

    def total(columns: dict[str, list[str]], headers: dict[str, str]) -> int:
        widths = [max([len(line) for line in headers[c].split("\n")] + [len(v) for v in vals])
                  for c, vals in columns.items()]
        return sum(widths) + 2 * (len(widths) - 1)

    steps = [dict(full_id=True, last=True, of_planned=True, wrap=False, trial=True),
             dict(full_id=False, last=True, of_planned=True, wrap=False, trial=True),
             dict(full_id=False, last=False, of_planned=True, wrap=False, trial=True),
             dict(full_id=False, last=False, of_planned=True, wrap=True, trial=True),
             dict(full_id=False, last=False, of_planned=False, wrap=True, trial=True),
             dict(full_id=False, last=False, of_planned=False, wrap=True, trial=False)]
    for step in steps:
        columns = cells(step["full_id"], step["last"], step["of_planned"])
        if not step["trial"]:
            columns.pop("trial")
        headers = {c: c for c in columns}
        if step["wrap"]:
            for k in swept:
                headers[k] = _wrap_header(k, max([len(v) for v in columns[k]] + [6]))
        if total(columns, headers) <= width:
            break
    table = Table(box=None, pad_edge=False, show_edge=False, collapse_padding=False)
    numeric = {"epoch", short_metric, f"best {short_metric}"}
    for c in columns:
        table.add_column(headers[c], justify="right" if c in numeric else "left",
                         no_wrap=c in swept or c == "state", overflow="fold")
    for i in range(len(shown)):
        table.add_row(*[columns[c][i] for c in columns])
    parts = [Text(header)] if header else []
    parts.append(table)
    if hidden:
        counts = {s: 0 for s in STATES}
        for r in hidden:
            counts[r.state] += 1
        parts.append(Text(f"… {len(hidden)} more ({describe_counts(counts)})"))
    return Group(*parts)


def header_line(rows: list[Row], total: int, elapsed: float, metric: str | None = None) -> str:
    counts = {s: 0 for s in STATES}
    for r in rows:
        counts[r.state] += 1
    done = sum(counts[s] for s in DONE_STATES)
    total = max(total, len(rows))
    text = f"elapsed {_duration(elapsed)} · {done}/{total} trials done"
    if done and done < total:
        text += f" · ETA {_duration(elapsed / done * (total - done))}"
    not_started = total - len(rows)  # Ray creates trials lazily
    counts[PENDING_STATE] += max(not_started, 0)
    text += " · " + describe_counts(counts)
    if metric is not None and selection_note(metric).endswith("test data"):
        text += f" · {selection_note(metric)}"  # a ranking chosen on the test set says so
    return text


class SweepConsole:
    """Writes the sweep's story to the terminal (stdout); notes to stderr."""

    def __init__(self, stream=None, live: bool | None = None, console=None):
        self.stream = stream or (console.file if console is not None else sys.stdout)
        self.live = (console.is_terminal if console is not None else self.stream.isatty()) if live is None else live
        self._console = console

    @property
    def rich(self):
        if self._console is None:
            from rich.console import Console
            self._console = Console(file=self.stream, force_terminal=self.live or None, soft_wrap=False)
        return self._console

    def print(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"note: {text}", file=sys.stderr, flush=True)

    def start(self, name, experiment_dir, trial_count, resources, resumed=False) -> None:
        verb = "resuming" if resumed else "sweep"
        gpu = f" + {resources['gpu']:g} GPU" if resources.get("gpu") else ""
        self.print(f"{verb} {name}: {trial_count} trial{'s' if trial_count != 1 else ''}, {resources['cpu']:g} CPU{gpu} each -> {experiment_dir}")

    def close(self) -> None:
        """Stop every live table of this process: also the one Ray unpickled
        for `tune resume`, which no caller holds (see LiveTable.__setstate__)."""
        for table in list(LiveTable.showing):
            table.stop()

    def finish(self, experiment, best, interrupted: bool, seconds: float) -> None:
        self.close()
        rows = rows_from_experiment(experiment)
        if rows:
            self.rich.print(render(rows, experiment.swept, experiment.metric, experiment.mode, self.rich.width,
                                   None if not self.live else max(self.rich.height, 12)))
        self.print(f"trials: {describe_counts(experiment.state_counts()) or 'none'} in {_duration(seconds)}")
        by = labellers((t.config for t in experiment.trials), experiment.swept)
        metric, mode = experiment.metric, experiment.mode
        if best is not None:
            last = best.last
            # Short lines, each a fact: an 80-column terminal shows them unbroken.
            self.print(f"best trial {best.trial_id}: {metric} "
                       f"{fmt(metric, best.best_value(metric, mode))} at epoch {best.epochs}")
            self.print(f"  with {describe(best.config, experiment.swept, by) or 'the fixed config'}")
            for pair in (ORIGINAL_COLUMNS[:2], ORIGINAL_COLUMNS[2:]):
                self.print("  " + "  ".join(f"{c} {fmt(c, last.get(c))}" for c in pair))
            self.print(f"  config: {best.path / 'params.json'}")
            # The number to quote (test accuracy at the best epoch by the sweep's
            # metric), short enough for an 80-column terminal.
            self.print(f"  {QUOTED} {fmt(QUOTED, quoted_accuracy(best.history, metric, mode))} "
                       f"({selection_note(metric)})")
        for trial in experiment.failed_trials():
            where = f" ({trial.error_file})" if trial.error_file else ""
            self.print(f"failed {trial.trial_id}: {trial.error}{where}")
        if experiment.meta.get("wandb"):
            self.print(wandb_line(experiment.path, experiment.meta.get("wandb_project")))
        self.print(f"experiment: {experiment.path}")
        if interrupted:
            self.print(f"interrupted: continue with `tune resume {experiment.path}`")


def wandb_line(experiment_dir, project: str | None) -> str:
    """What wandb kept, as found on disk now (not what was meant to happen)."""
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode == "disabled":
        return "wandb: disabled (WANDB_MODE=disabled): nothing was logged"
    project = project or "tune_pipeline"
    if "://" in str(experiment_dir):
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


class LiveTable(tune.Callback):
    """A Tune callback: Ray ignores custom progress reporters in its new
    console output, but callbacks run in the driver on every loop step."""

    # The tables whose rich Live display is on, in this (driver) process.
    showing: "weakref.WeakSet[LiveTable]" = weakref.WeakSet()

    def __init__(self, swept: list[str], metric: str, mode: str, console: SweepConsole, total: int = 0):
        self.swept, self.metric, self.mode, self.console = swept, metric, mode, console
        self.total = total  # Ray creates trials lazily: len(trials) is not the sweep's size
        self._live = None
        self._last = 0.0
        self._started = time.monotonic()
        self._epoch_lines: dict[str, float] = {}
        # Each trial's best value of the metric, from its results: not every
        # metric has a running best of its own (train_loss's is best_loss).
        self._best: dict[str, float] = {}

    # Ray pickles the run config (callbacks included) for `Tuner.restore`; a
    # terminal does not pickle, so a restored table writes to this process's.
    def __getstate__(self):
        return {"swept": self.swept, "metric": self.metric, "mode": self.mode, "total": self.total}

    def __setstate__(self, state):
        self.__init__(console=SweepConsole(), **state)

    def setup(self, **info):
        self._started = time.monotonic()
        if self.console is not None and self.console.live:
            from rich.live import Live
            # Transient: the final table is drawn from disk, where the states are settled.
            self._live = Live(console=self.console.rich, refresh_per_second=2, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
            LiveTable.showing.add(self)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        LiveTable.showing.discard(self)

    def renderable(self, trials):
        console = self.console.rich
        rows = rows_from_ray(trials, self.metric, self._best)
        header = header_line(rows, self.total, time.monotonic() - self._started, self.metric)
        return render(rows, self.swept, self.metric, self.mode, console.width, console.height, header)

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if self._live is not None and now - self._last >= REFRESH_SECONDS:
            self._last = now
            self._live.update(self.renderable(trials))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            old = self._best.get(trial.trial_id)
            if old is None or (value > old if self.mode == "max" else value < old):
                self._best[trial.trial_id] = value
        if self.console is None or self._live is not None:
            return
        now = time.monotonic()
        if now - self._epoch_lines.get(trial.trial_id, -EPOCH_LINE_SECONDS) < EPOCH_LINE_SECONDS:
            return
        self._epoch_lines[trial.trial_id] = now
        self.console.print(f"[{_duration(now - self._started)}] {trial.trial_id} epoch {result.get('epoch', '?')}"
                           f"/{trial.config.get('epochs', '?')}: {self.metric} "
                           f"{fmt(self.metric, result.get(self.metric))}  {self._describe(trials, trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        epoch = int(result.get("epoch", 0) or 0)
        self._event(trial, trials, state_name("TERMINATED", epoch, trial.config.get("epochs"), live=True))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._event(trial, trials, FAILED_STATE)

    def on_experiment_end(self, trials, **info):
        self.stop()

    def _describe(self, trials, trial) -> str:
        return describe(trial.config, self.swept, labellers((t.config for t in trials), self.swept), sep=" ")

    def _event(self, trial, trials, state: str) -> None:
        if self.console is None:
            return
        result = trial.last_result or {}
        if state == FAILED_STATE:
            error_file = Path(trial.error_file) if trial.error_file else None
            reason = _error_reason(error_file.read_text()) if error_file and error_file.exists() else "failed"
            if error_file is not None and trial.path and "://" not in str(trial.path):
                error_file = Path(trial.path) / error_file.name  # where it is kept, not Ray's temp copy
            line = f"failed {trial.trial_id} at epoch {result.get('epoch', 0)}: {reason}" + (
                f" ({error_file})" if error_file else "")
        else:
            # Ray calls this before it marks the trial done: count it by hand.
            done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
            line = (f"[{done}/{max(self.total, len(trials))}] {trial.trial_id} {state} at epoch "
                    f"{result.get('epoch', 0)}: {self.metric} {fmt(self.metric, result.get(self.metric))}"
                    f" best {fmt(self.metric, self._best.get(trial.trial_id))}"
                    f"  {self._describe(trials, trial)}")
        if self._live is not None:
            if state == FAILED_STATE:  # above the table; finished trials show in it
                self._live.console.print(line, soft_wrap=True)
        else:
            self.console.print(line)


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
