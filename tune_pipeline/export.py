"""Best-trial tables from an experiment on disk: markdown, CSV, Parquet, JSON.

The first columns are those of the original pipeline's results table
(`config`, `best_train_accuracy`, `best_test_accuracy`, `best_loss`,
`best_test_loss`); then each swept parameter, the trial's status, epochs
done, and the path of its best kept checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tune_pipeline.config import check_metric_name
from tune_pipeline.errors import UserError
from tune_pipeline.experiment import Experiment
from tune_pipeline.labels import describe, labellers

FORMATS = ("md", "csv", "parquet", "json")
BEST_COLUMNS = ["best_train_accuracy", "best_test_accuracy", "best_loss", "best_test_loss"]


def best_trial_rows(experiment: Experiment, metric: str | None = None, top: int | None = None) -> list[dict]:
    metric = metric or experiment.metric
    mode = experiment.mode_for(metric)
    ranked = experiment.ranked(metric, mode)
    unranked = [t for t in experiment.trials if t not in ranked]  # failed before a result
    by = labellers((t.config for t in experiment.trials), experiment.swept)
    rows = []
    for trial in (ranked + unranked)[: top or None]:
        last = trial.last
        row = {"config": describe(trial.config, experiment.swept, by)}
        for column in BEST_COLUMNS:
            row[column] = last.get(column)
        if metric not in BEST_COLUMNS:
            row[metric] = trial.best_value(metric, mode)
        for key in experiment.swept:
            row[key] = trial.config.get(key)
        checkpoint = trial.best_checkpoint(metric, mode)
        row.update({"trial_id": trial.trial_id, "status": experiment.state(trial), "epochs": trial.epochs,
                    "checkpoint": str(checkpoint) if checkpoint else None,
                    "error": trial.error})
        rows.append(row)
    return rows


def display_rows(rows: list[dict], swept=()) -> list[dict[str, str]]:
    """The rows as a person reads them (markdown, the report): every column
    kept, empty cells empty, swept values by their labels, metrics to 4 places."""
    by = labellers(rows, swept)
    shown = []
    for row in rows:
        cells = {}
        for column, value in row.items():
            if column in by:
                cells[column] = by[column](value) if value is not None else ""
            elif value is None:
                cells[column] = ""
            elif isinstance(value, float):
                cells[column] = f"{value:.4f}"
            else:
                cells[column] = str(value)
        shown.append(cells)
    return shown


def to_markdown(rows: list[dict], swept=()) -> str:
    if not rows:
        return "(no trials)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r[c].replace("|", "\\|") for c in columns) + " |"
              for r in display_rows(rows, swept)]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


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
    return "md"


def export(experiment: Experiment, fmt: str, output: Path | None, metric: str | None = None,
           top: int | None = None) -> str | None:
    """Write the table to `output` (or return it as text when output is None)."""
    check_metric_name(metric)
    rows = best_trial_rows(experiment, metric, top)
    if fmt == "parquet":
        if output is None:
            raise UserError("--format parquet needs --output FILE")
        write_parquet(rows, output)
        return None
    if fmt == "md":
        text = to_markdown(rows, experiment.swept)
    elif fmt == "csv":
        text = to_csv(rows)
    else:
        text = json.dumps(rows, indent=2, default=str) + "\n"
    if output is None:
        return text
    output.write_text(text)
    return None
