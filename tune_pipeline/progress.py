"""The table of trials, as the live table, `tune status` and a sweep's end
show it: a table that fits the terminal, or, narrower than MIN_TABLE_WIDTH,
a line per trial.

The table has a fixed core that every width from MIN_TABLE_WIDTH up shows:
the trial (the part of its id that differs), its state in a short form
(explained in the header), its epoch and the metric's last and best value.
Swept values fill the width that is left, each a whole label, never cut:
when they do not all fit, the ones that tell the shown rows apart come
first, and a line says how many are hidden and which command shows them all.
More trials than rows: the running ones and the best are shown, then "… N more".

The rest of what a sweep shows is `sweep_console.py`'s (start-up steps,
notes, the end) and `live_table.py`'s (the Tune callback that keeps the
table while Ray runs); this module imports no Ray, so `tune status` does
not pay for it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from tune_pipeline.experiment import (FAILED_STATE, FINISHED_STATE, INTERRUPTED_STATE, PENDING_STATE,
                                      RUNNING_STATE, STATES, STOPPED_STATE, describe_counts)
from tune_pipeline.labels import Labeller, describe, labellers
from tune_pipeline.metrics import fmt, oriented

REFRESH_SECONDS = 1.0
EPOCH_LINE_SECONDS = 30.0  # in a log: at most one epoch line per trial this often
MIN_TABLE_WIDTH = 40  # narrower terminals get the log's lines
DONE_STATES = (FINISHED_STATE, STOPPED_STATE, FAILED_STATE)
WIDE_COMMAND = "tune status --wide"

# The table's state column: short forms that are never cut.  A state without
# one (a word added to experiment.STATES later) shows whole.
SHORT_STATES = {PENDING_STATE: "wait", RUNNING_STATE: "run", FINISHED_STATE: "done",
                STOPPED_STATE: "early", FAILED_STATE: "fail", INTERRUPTED_STATE: "int"}
GAP = 2  # spaces between columns


def short_state(state: str) -> str:
    return SHORT_STATES.get(state, state)


def count_line(counts: dict[str, int]) -> str:
    """`2 running (run), 1 pending (wait)`: the counts, explaining the table's short forms."""
    order = list(STATES) + [s for s in counts if s not in STATES]
    return ", ".join(f"{counts[s]} {s}" + (f" ({short_state(s)})" if short_state(s) != s else "")
                     for s in order if counts.get(s))


def short_duration(seconds: float) -> str:
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


def row_score(row: Row, mode: str) -> float:
    if row.best is None or not math.isfinite(row.best):
        return float("-inf")
    return oriented(row.best, mode)


def order_rows(rows: list[Row], mode: str) -> list[Row]:
    """The running trials, then the others by their best value, then the pending ones."""
    running = sorted((r for r in rows if r.state == RUNNING_STATE), key=lambda r: row_score(r, mode), reverse=True)
    done = sorted((r for r in rows if r.state not in (RUNNING_STATE, PENDING_STATE)),
                  key=lambda r: row_score(r, mode), reverse=True)
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
