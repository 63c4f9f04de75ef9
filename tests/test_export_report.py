"""Every export format carries the same columns, the report's table is
export's, and `tune --version` answers."""

import csv
import html
import io
import json
import re

import pyarrow.parquet as pq

from tune_pipeline import __version__
from tune_pipeline.experiment import load_experiment
from tune_pipeline.export import best_trial_rows, to_markdown, value_labels
from tune_pipeline.report import build_report

from conftest import run_tune
from fake_experiment import QUICKSTART_GRID, make_experiment


def md_table(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return split[0], split[2:]


def test_formats_share_columns_and_markdown_keeps_empty_ones(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID)  # no checkpoints kept, no errors
    experiment = load_experiment(path)
    rows = best_trial_rows(experiment)
    header, body = md_table(to_markdown(rows, value_labels(experiment)))
    assert header == list(rows[0]) and {"checkpoint", "error"} <= set(header)
    assert {r[header.index("runtime_transform_script")] for r in body} == {"basic", "advanced"}
    done = run_tune("export", path, "--format", "csv")
    assert list(csv.DictReader(io.StringIO(done.stdout)).fieldnames) == header
    run_tune("export", path, "--output", tmp_path / "t.json")
    assert list(json.loads((tmp_path / "t.json").read_text())[0]) == header
    run_tune("export", path, "--output", tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet").column_names == header


def test_report_table_equals_exports_markdown(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={1: ("ERROR", 1)})
    experiment = load_experiment(path)
    header, body = md_table(to_markdown(best_trial_rows(experiment), value_labels(experiment)))
    page = build_report(experiment)
    table = page[page.index('<table id="best-trials">'):page.index("</table>")]
    heads = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)]
    cells = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
             for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table)[1:]]
    assert heads == header
    assert cells == body
    assert "RunFailed: loss diverged" in page and "failed" in page


def test_version():
    done = run_tune("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"tune_pipeline {__version__}"


def test_a_value_has_one_label_whichever_rows_are_shown(tmp_path):
    """`--top 1` shows one trial: its script is still `basic`, as in the
    config column, not the full stem a lone value would get."""
    path = make_experiment(tmp_path, QUICKSTART_GRID)
    experiment = load_experiment(path)
    header, body = md_table(to_markdown(best_trial_rows(experiment, top=1), value_labels(experiment)))
    script = body[0][header.index("runtime_transform_script")]
    assert script in ("basic", "advanced") and f"runtime_transform_script={script}" in body[0][0]
