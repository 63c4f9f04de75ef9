"""Best-trial tables from an experiment on disk: markdown, CSV, Parquet, JSON.

The first columns are those of the original pipeline's results table
(`config`, `best_train_accuracy`, `best_test_accuracy`, `best_loss`,
`best_test_loss`); then the validation bests and `test_accuracy_at_best`,
the test accuracy of the epoch where the ranking metric was best (the number
to quote: `best_test_accuracy` is a maximum over epochs chosen by looking at
the test set); then each swept parameter (under PBT, then the
`hyperparameter_schedule` that trained the ranked epoch), the trial's status,
`epochs_done`, and the path of its best kept checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

from tune_pipeline.config import REPEAT_KEY, check_metric_name
from tune_pipeline.errors import UserError
from tune_pipeline.experiment import Experiment
from tune_pipeline.metrics import (METRICS, ORIGINAL_COLUMNS, QUOTED, RUNNING_BEST, VALIDATION_COLUMNS,
                                   fmt, oriented, quoted_accuracy, selection_note, sign)
from tune_pipeline.labels import describe, labellers
from tune_pipeline.pbt import SCHEDULE_KEY, describe_schedule, is_pbt, schedule_of, trial_schedule

FORMATS = ("md", "csv", "parquet", "json")
BEST_COLUMNS = [*ORIGINAL_COLUMNS, *VALIDATION_COLUMNS]


def own_column(metric: str) -> bool:
    """Whether the ranking metric needs a column of its own: not when it is one
    of the best columns, or they hold its running best already."""
    return metric not in BEST_COLUMNS and RUNNING_BEST.get(metric) not in BEST_COLUMNS


def best_column(metric: str) -> str:
    """The column that holds each trial's best value of `metric`."""
    if own_column(metric) or metric in BEST_COLUMNS:
        return metric
    return RUNNING_BEST[metric]


def best_trial_rows(experiment: Experiment, metric: str | None = None, top: int | None = None) -> list[dict]:
    metric = metric or experiment.metric
    mode = experiment.mode_for(metric)
    ranked = experiment.ranked(metric, mode)
    placed = {id(t) for t in ranked}  # by identity, once: `t not in ranked` was quadratic
    unranked = [t for t in experiment.trials if id(t) not in placed]  # failed before a result
    rows = []
    for trial in (ranked + unranked)[: top or None]:
        last = trial.last
        row = {"config": Config(trial.config, experiment.swept)}
        for column in BEST_COLUMNS:
            row[column] = last.get(column)
        row[QUOTED] = quoted_accuracy(trial.history, metric, mode)
        if own_column(metric):
            row[metric] = trial.best_value(metric, mode)
        for key in experiment.swept:
            row[key] = trial.config.get(key)
        if is_pbt(experiment.record):  # the values that trained the ranked epoch, as JSON
            schedule = trial_schedule(trial.history, metric, mode)
            row[SCHEDULE_KEY] = json.dumps(schedule) if schedule else None
        checkpoint = trial.best_checkpoint(metric, mode)
        # epochs_done, not epochs: a sweep over `epochs` keeps its swept column.
        row.update({"trial_id": trial.trial_id, "status": experiment.state(trial), "epochs_done": trial.epochs,
                    "checkpoint": str(checkpoint) if checkpoint else None,
                    "error": trial.error})
        rows.append(row)
    return rows


def grouped_rows(experiment: Experiment, metric: str | None = None) -> list[dict]:
    """Repeats folded: one row per configuration (the swept keys but the repeat
    seed), each column's mean and standard deviation over its trials, best first."""
    metric = metric or experiment.metric
    mode = experiment.mode_for(metric)
    repeat_key = experiment.record.repeat_key or REPEAT_KEY
    keys = [k for k in experiment.swept if k != repeat_key]
    columns = BEST_COLUMNS + [QUOTED] + ([metric] if own_column(metric) else [])

    def value(trial, column):
        if column == QUOTED:
            return quoted_accuracy(trial.history, metric, mode)
        if column == metric and own_column(metric):
            return trial.best_value(metric, mode)
        return trial.last.get(column)

    groups: dict[str, list] = {}
    for trial in experiment.trials:
        groups.setdefault(json.dumps([trial.config.get(k) for k in keys], default=str), []).append(trial)
    rows = []
    for trials in groups.values():
        row = {"config": Config(trials[0].config, keys), "trials": len(trials)}
        for column in columns:
            values = [value(t, column) for t in trials]
            values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
            row[f"{column}_mean"] = statistics.fmean(values) if values else None
            # One value has no spread to measure: no std (markdown says n=1), never a 0 that reads as "none".
            row[f"{column}_std"] = statistics.stdev(values) if len(values) > 1 else None
        for key in keys:
            row[key] = trials[0].config.get(key)
        rows.append(row)
    key = f"{best_column(metric)}_mean"
    rows.sort(key=lambda r: (r[key] is None, -oriented(r[key] or 0, mode)))
    return rows


def _mean_std_columns(rows: list[dict]) -> list[dict]:
    """For markdown: `mean ± std` in one cell, or `value (n=1)` for a single value."""
    out = []
    for row in rows:
        merged = {}
        for key, value in row.items():
            if key.endswith("_std"):
                continue
            if key.endswith("_mean"):
                column, std = key[:-5], row[key[:-5] + "_std"]
                merged[column] = (None if value is None else f"{fmt(column, value)} (n=1)" if std is None
                                  else f"{fmt(column, value)} ± {fmt(column, std)}")
            else:
                merged[key] = value
        out.append(merged)
    return out


class Config(dict):
    """A trial's swept values, for the `config` column: whole values in CSV,
    JSON and Parquet (`key=value, ...`), labels where a person reads it
    (markdown, the report: display_rows)."""

    def __init__(self, config: dict, keys: list[str]):
        super().__init__((k, config.get(k)) for k in keys)

    def __str__(self) -> str:
        return ", ".join(f"{k}={_whole(v)}" for k, v in self.items())


def _whole(value) -> str:
    """A value as written to a file: every digit of a float, True as true."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else "-" if value is None else str(value)


def ranking_note(experiment: Experiment, metric: str | None = None) -> str:
    """How the rows were ranked and what the quoted number means, in one line."""
    metric = metric or experiment.metric
    mode = experiment.mode_for(metric)
    note = (f"ranked by {metric} ({'highest' if sign(mode) > 0 else 'lowest'} first), "
            f"{selection_note(metric)}; {QUOTED} is the test accuracy at the epoch of each trial's "
            f"best {metric}")
    if selection_note(metric).endswith("test data"):
        note += " (chosen on the test set itself, so the top rows' test numbers are optimistic)"
    return note


def value_labels(experiment: Experiment) -> dict:
    """A labeller per swept key over every trial of the experiment, so a value
    has one label in every row and column, whichever rows are shown."""
    return labellers((t.config for t in experiment.trials), experiment.swept)


def display_rows(rows: list[dict], by: dict) -> list[dict[str, str]]:
    """The rows as a person reads them (markdown, the report): every column
    kept, empty cells empty, swept values by their labels (`by`, from
    value_labels), metrics as metrics.py shows them."""
    shown = []
    for row in rows:
        cells = {}
        for column, value in row.items():
            if isinstance(value, Config):
                cells[column] = describe(value, list(value), by)
            elif column in by:
                cells[column] = by[column](value) if value is not None else ""
            elif column == SCHEDULE_KEY:
                cells[column] = describe_schedule(schedule_of(row))
            elif value is None:
                cells[column] = ""
            elif column in METRICS:
                cells[column] = fmt(column, value)  # accuracies as percentages, losses to 4 places
            elif isinstance(value, float):
                cells[column] = f"{value:.4f}"
            else:
                cells[column] = str(value)
        shown.append(cells)
    return shown


def to_markdown(rows: list[dict], by: dict) -> str:
    if not rows:
        return "(no trials)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r[c].replace("|", "\\|") for c in columns) + " |"
              for r in display_rows(rows, by)]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, list(rows[0]))
        writer.writeheader()
        writer.writerows(_whole_rows(rows))
    return out.getvalue()


def _whole_rows(rows: list[dict]) -> list[dict]:
    """The rows as files keep them: the config column as its whole values."""
    return [{k: str(v) if isinstance(v, Config) else v for k, v in r.items()} for r in rows]


def write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(rows[0]) if rows else ["trial_id"]
    # Swept values can mix ints and floats across trials; one type per column.
    table = pa.table({c: _arrow_column([r.get(c) for r in rows]) for c in columns})
    pq.write_table(table, path)


def _arrow_column(values: list):
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if not present:
        return pa.array(values, type=pa.string())  # an all-empty column (no errors) is still text
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if not all(isinstance(v, int) for v in present):
            values = [None if v is None else float(v) for v in values]
    elif present and not all(isinstance(v, bool) for v in present):
        values = [None if v is None else str(v) for v in values]
    return pa.array(values)


def guess_format(output: Path | None, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise UserError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    if output is not None:
        suffix = output.suffix.lstrip(".").lower()
        suffix = {"markdown": "md", "pq": "parquet"}.get(suffix, suffix)
        if suffix in FORMATS:
            return suffix
        # Markdown in best.xlsx would look written and open as garbage.
        raise UserError(f"--output {output}: unknown extension {output.suffix or '(none)'!r}; use "
                        f".{', .'.join(FORMATS)}, or name the format with --format")
    return "md"


def export(experiment: Experiment, fmt: str, output: Path | None, metric: str | None = None,
           top: int | None = None, group: bool = False) -> str | None:
    """Write the table to `output` (or return it as text when output is None).
    With `group`, repeats of a configuration fold into one row (mean and std)."""
    check_metric_name(metric)
    if group:
        rows = grouped_rows(experiment, metric)[: top or None]
        if fmt == "md":
            rows = _mean_std_columns(rows)
    else:
        rows = best_trial_rows(experiment, metric, top)
    if fmt == "md":
        text = to_markdown(rows, value_labels(experiment)) + "\n" + ranking_note(experiment, metric) + "\n"
        if output is None:
            return text
        output.write_text(text)
        return None
    if fmt == "parquet":
        if output is None:
            raise UserError("--format parquet needs --output FILE")
        write_parquet(rows, output)
        return None
    text = to_csv(rows) if fmt == "csv" else json.dumps(_whole_rows(rows), indent=2, default=str) + "\n"
    if output is None:
        return text
    output.write_text(text)
    return None
