"""What a user sees while a sweep runs: the start-up steps that take time, a
live table of trials that fits the terminal, or, in a log (no terminal, a
dumb one, or one narrower than MIN_TABLE_WIDTH), a line per finished epoch
of each trial (at most one per trial every EPOCH_LINE_SECONDS) and one per
finished trial; then the final summary.  Ray's own output goes to the
experiment's log file.

The table has a fixed core that every width from MIN_TABLE_WIDTH up shows:
the trial (the part of its id that differs), its state in a short form
(explained in the header), its epoch and the metric's last and best value.
Swept values fill the width that is left, each a whole label, never cut:
when they do not all fit, the ones that tell the shown rows apart come
first, and a line says how many are hidden and which command shows them all.
More trials than rows: the running ones and the best are shown, then "… N more".

The Tune callback that keeps the live table while Ray runs (`LiveTable`) is
`live_table.py`'s: this module imports no Ray, so `tune status` does not pay
for it.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from tune_pipeline.experiment import (FAILED_STATE, FINISHED_STATE, INTERRUPTED_STATE, PENDING_STATE,
                                      RUNNING_STATE, STATES, STOPPED_STATE, describe_counts)
from tune_pipeline.labels import Labeller, describe, labellers
from tune_pipeline.metrics import fmt, oriented
from tune_pipeline.storage import is_uri
from tune_pipeline.summary import winner_summary

REFRESH_SECONDS = 1.0
EPOCH_LINE_SECONDS = 30.0  # in a log: at most one epoch line per trial this often
PHASE_SECONDS = 1.0  # a start-up step that takes longer says what it is doing
MIN_TABLE_WIDTH = 40  # narrower terminals get the log's lines
DONE_STATES = (FINISHED_STATE, STOPPED_STATE, FAILED_STATE)
LOG_FILE = "tune.log"  # Ray's and wandb's log lines, in the experiment folder
WIDE_COMMAND = "tune status --wide"

# The table's state column: short forms that are never cut.  A state without
# one (a word added to experiment.STATES later) shows whole.
SHORT_STATES = {PENDING_STATE: "wait", RUNNING_STATE: "run", FINISHED_STATE: "done",
                STOPPED_STATE: "early", FAILED_STATE: "fail", INTERRUPTED_STATE: "int"}
GAP = 2  # spaces between columns
# The live tables (live_table.LiveTable) whose rich display is on, in this
# (driver) process: SweepConsole.close stops them all.
LIVE_TABLES: "weakref.WeakSet" = weakref.WeakSet()


def short_state(state: str) -> str:
    return SHORT_STATES.get(state, state)


def count_line(counts: dict[str, int]) -> str:
    """`2 running (run), 1 pending (wait)`: the counts, explaining the table's short forms."""
    order = list(STATES) + [s for s in counts if s not in STATES]
    return ", ".join(f"{counts[s]} {s}" + (f" ({short_state(s)})" if short_state(s) != s else "")
                     for s in order if counts.get(s))


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

    @property
    def planned(self):
        epochs = self.config.get("epochs")
        return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def rows_from_experiment(experiment, metric: str | None = None) -> list[Row]:
    metric = metric or experiment.metric
    mode = experiment.mode_for(metric)
    return [Row(t.trial_id, experiment.state(t), t.config, t.epochs, t.last.get(metric),
                t.best_value(metric, mode)) for t in experiment.trials]


def _score(row: Row, mode: str) -> float:
    if row.best is None or not math.isfinite(row.best):
        return float("-inf")
    return oriented(row.best, mode)


def order_rows(rows: list[Row], mode: str) -> list[Row]:
    """The running trials, then the others by their best value, then the pending ones."""
    running = sorted((r for r in rows if r.state == RUNNING_STATE), key=lambda r: _score(r, mode), reverse=True)
    done = sorted((r for r in rows if r.state not in (RUNNING_STATE, PENDING_STATE)),
                  key=lambda r: _score(r, mode), reverse=True)
    return running + done + [r for r in rows if r.state == PENDING_STATE]


def short_ids(ids) -> Labeller:
    """The part of Ray's trial ids that differs (`00003` of `d6c5f_00003`)."""
    return Labeller(ids)


class _Column:
    def __init__(self, name: str, title: str, cells: list[str], right: bool = False):
        self.name, self.title, self.cells, self.right = name, title, cells, right

    @property
    def width(self) -> int:
        return max([len(line) for line in self.title.split("\n")] + [len(c) for c in self.cells])


def _wrap_title(name: str, width: int) -> str:
    """`runtime_transform_script` as lines no wider than `width` (or its
    longest `_`-part), broken after `_`."""
    lines, line = [], ""
    for part in name.replace("_", "_\0").split("\0"):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join(lines + [line])


def _swept_column(key: str, cells: list[str]) -> _Column:
    widest = max((len(c) for c in cells), default=1)
    return _Column(key, _wrap_title(key, widest) if len(key) > widest else key, cells)


def _pick_swept(columns: list[_Column], rows: list[Row], budget: int) -> list[_Column]:
    """The swept columns that fit in `budget` characters: all when they fit;
    else, one by one, the column that tells most of the shown rows apart
    (of two that tell as many, the one the file names first), and then, in
    the file's order, the others that still fit."""
    if sum(c.width + GAP for c in columns) <= budget:
        return columns
    chosen: list[_Column] = []
    groups = [list(range(len(rows)))]
    left = list(columns)
    while left:
        best, best_groups = None, None
        for column in left:
            if column.width + GAP > budget:
                continue
            split = [g for group in groups for g in _split(group, column.cells)]
            if len(split) > len(groups) and (best is None or len(split) > len(best_groups)):
                best, best_groups = column, split
        if best is None:
            break
        chosen.append(best)
        left.remove(best)
        budget -= best.width + GAP
        groups = best_groups
    for column in left:
        if column.width + GAP <= budget:
            chosen.append(column)
            budget -= column.width + GAP
    return [c for c in columns if c in chosen]


def _split(group: list[int], cells: list[str]) -> list[list[int]]:
    parts: dict[str, list[int]] = {}
    for i in group:
        parts.setdefault(cells[i], []).append(i)
    return list(parts.values())


def _lines(text: str, width: int) -> int:
    """How many terminal lines `text` takes at `width` (rich wraps at spaces)."""
    from rich.console import Console
    from rich.text import Text

    if not text:
        return 0
    return len(Text(text).wrap(Console(width=width, file=io.StringIO()), width))


def render(ordered: list[Row], swept: list[str], metric: str, width: int, height: int | None = None, *,
           header: list[str] = (), unlisted: dict[str, int] | None = None, ids=None, wide: bool = False,
           experiment_dir=None):
    """A rich renderable: the header lines, the table, "… N more", and which
    swept columns were left out.  `ordered`: rows by priority (order_rows);
    `unlisted`: the counts per state of trials not passed in at all (the live
    table passes only the rows it could show); `ids`: the short trial ids;
    `wide`: every swept column, whatever the width.

    Swept values are labelled among the rows shown: a row is read against the
    rows beside it, and 3 digits tell 0.0195 from 0.0201 where the labels of
    5,000 trials would need 8 (export and the report label over all trials)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    ids = ids if ids is not None else short_ids(r.trial_id for r in ordered)
    unlisted = {s: n for s, n in (unlisted or {}).items() if n}
    header_lines = sum(_lines(h, width) for h in header)
    # title (up to 3 lines when swept titles wrap), "… N more", hidden columns, the cursor
    room = len(ordered) if height is None else max(height - header_lines - 6, 3)
    shown, hidden_rows = ordered[:room], ordered[room:]
    by = labellers((r.config for r in shown), swept)

    short_metric = metric.replace("accuracy", "acc")
    planned = [r.planned for r in shown]
    started = [r.state != PENDING_STATE or r.epoch > 0 for r in shown]  # a resumed trial waits at its epoch
    epoch_full = [(f"{r.epoch}/{p}" if p else str(r.epoch)) if s else "-" for r, p, s in zip(shown, planned, started)]
    epoch_short = [str(r.epoch) if s else "-" for r, s in zip(shown, started)]
    core = [_Column("trial", "trial", [ids(r.trial_id) for r in shown]),
            _Column("state", "state", [short_state(r.state) for r in shown]),
            _Column("epoch", "epoch", epoch_full, right=True),
            _Column("last", short_metric, [fmt(metric, r.last) for r in shown], right=True),
            _Column("best", "best", [fmt(metric, r.best) for r in shown], right=True)]

    def core_width() -> int:
        return sum(c.width for c in core) + GAP * (len(core) - 1)

    if core_width() > width:
        core[2].cells = epoch_short
    if core_width() > width and len(short_metric) > len("last"):
        core[3].title = "last"
    swept_columns = [_Column(k, k, [by[k](r.config.get(k)) for r in shown]) if wide
                     else _swept_column(k, [by[k](r.config.get(k)) for r in shown]) for k in swept]
    if wide:
        picked = swept_columns
    else:
        picked = _pick_swept(swept_columns, shown, width - core_width())
    columns = core[:2] + picked + core[2:]

    parts = [Text(h) for h in header]
    plain = _plain_table(columns, len(shown), width) if height is None else None
    if plain is not None:
        parts.extend(plain)
    else:
        table = Table(box=None, pad_edge=False, show_edge=False, collapse_padding=False, padding=(0, GAP // 2))
        for c in columns:
            table.add_column(c.title, justify="right" if c.right else "left", no_wrap=True)
        for i in range(len(shown)):
            table.add_row(*[c.cells[i] for c in columns])
        parts.append(table)
    more = len(hidden_rows) + sum(unlisted.values())
    if more:
        counts = dict(unlisted)
        for r in hidden_rows:
            counts[r.state] = counts.get(r.state, 0) + 1
        parts.append(Text(f"… {more} more ({describe_counts(counts)})"))
    left_out = [c.name for c in swept_columns if c not in picked]
    if left_out:
        command = f"{WIDE_COMMAND} {_shown_path(experiment_dir)}" if experiment_dir else WIDE_COMMAND
        count = f"{len(left_out)} swept value{'s' if len(left_out) != 1 else ''} hidden"
        named = f"{count} ({', '.join(left_out)}):"
        parts.extend(Text(line) for line in pack([named if len(named) + len(command) < width else f"{count}:",
                                                  command], width, " "))
    return Group(*parts)


def _plain_table(columns: list[_Column], rows: int, width: int):
    """The table as rich's Table lays it out here (no box, GAP spaces between
    columns, titles bottom-aligned, one line per row), as two Texts: its header (bold,
    as rich's) and its rows.  A listing of every row (a file, a pager) has
    thousands: rich measures and pads each cell through its renderables,
    2.4 s of CPU for 5,000 rows, where joining the strings is milliseconds.
    None where rich would have to squeeze the columns (too wide) or count
    character cells (non-ASCII): that layout stays rich's."""
    from rich.text import Text

    widths = [c.width for c in columns]
    if sum(widths) + GAP * (len(columns) - 1) > width:
        return None
    if not all(c.title.isascii() and all(cell.isascii() for cell in c.cells) for c in columns):
        return None
    titles = [c.title.split("\n") for c in columns]
    sep = " " * GAP

    def line(cells) -> str:
        return sep.join(cell.rjust(w) if c.right else cell.ljust(w) for c, w, cell in zip(columns, widths, cells))

    depth = max(len(t) for t in titles)
    titles = [[""] * (depth - len(t)) + t for t in titles]  # a wrapped title ends on the line above the rows
    head = [line([t[i] for t in titles]) for i in range(depth)]
    body = [line([c.cells[i] for c in columns]) for i in range(rows)]
    parts = [Text("\n".join(head), style="bold", no_wrap=True, overflow="ignore")]
    if body:
        parts.append(Text("\n".join(body), no_wrap=True, overflow="ignore"))
    return parts


def _shown_path(path) -> str:
    """The experiment as a user would type it: relative to here when inside it."""
    if isinstance(path, Path):
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except (ValueError, OSError):
            pass
    return str(path)


def pack(parts: list[str], width: int, sep: str = " · ") -> list[str]:
    """Parts joined by `sep` into lines no wider than `width`, each part whole where it fits."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(sep) + len(part) <= width:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return lines


def render_experiment(experiment, width: int, height: int | None = None, wide: bool = False):
    """The table of an experiment on disk: the final summary's and `tune status`'s."""
    rows = order_rows(rows_from_experiment(experiment), experiment.mode)
    return render(rows, experiment.swept, experiment.metric, width, height,
                  ids=short_ids(t.trial_id for t in experiment.trials), wide=wide,
                  experiment_dir=experiment.path)


def trial_lines(experiment) -> list[str]:
    """The final table as log lines, one per trial, for terminals too narrow for a table."""
    metric, mode = experiment.metric, experiment.mode
    by = labellers((t.config for t in experiment.trials), experiment.swept)
    lines = []
    for row in order_rows(rows_from_experiment(experiment), mode):
        lines.append(f"{row.trial_id} {row.state} at epoch {row.epoch}: {metric} {fmt(metric, row.last)} "
                     f"best {fmt(metric, row.best)}  {describe(row.config, experiment.swept, by, sep=' ')}")
    return lines


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
        self.print(f"trials: {count_line(counts) or 'none'} in {_duration(seconds)}")
        if experiment.trials:
            if self.rich.width >= MIN_TABLE_WIDTH:
                height = max(self.rich.height, 12) if self.live else None
                self.rich.print(render_experiment(experiment, self.rich.width, height))
            else:
                for line in trial_lines(experiment):
                    self.print(line)
        summary = winner_summary(experiment, best=best)
        for line in summary.lines() if summary else ():
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
