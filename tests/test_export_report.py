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

from conftest import chromium, run_tune
from fake_experiment import QUICKSTART_GRID, SCRIPTS, make_experiment


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
    assert sorted(heads) == sorted(header)  # the same columns and cells, what a reader looks for first
    assert [dict(zip(heads, row)) for row in cells] == [dict(zip(header, row)) for row in body]
    assert heads[:3] == ["trial_id", "best_test_accuracy", "test_accuracy_at_best"]
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


def test_files_keep_whole_values_in_every_column_config_included(tmp_path):
    grid = {**QUICKSTART_GRID, "weight_decay": [5.123456789e-05]}
    path = make_experiment(tmp_path, {**grid, "learning_rate": [0.0212345678, 0.1]})
    experiment = load_experiment(path)
    text = run_tune("export", path, "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    scripts = {t.config["runtime_transform_script"] for t in experiment.trials}
    for row in rows:
        config = dict(part.split("=", 1) for part in row["config"].split(", "))
        assert config["runtime_transform_script"] in scripts  # the whole path, not `basic`
        assert float(config["learning_rate"]) == float(row["learning_rate"])  # every digit
        assert config["weight_decay"] == "5.123456789e-05"
    as_json = json.loads(run_tune("export", path, "--format", "json").stdout)
    assert [r["config"] for r in as_json] == [r["config"] for r in rows]
    markdown = run_tune("export", path).stdout  # a person's table: labels
    assert "runtime_transform_script=basic" in markdown and "learning_rate=0.0212" in markdown


def test_group_of_one_trial_says_n_1_not_a_spread(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID)
    markdown = run_tune("export", path, "--group").stdout
    assert "(n=1)" in markdown and "±" not in markdown, markdown
    rows = list(csv.DictReader(io.StringIO(run_tune("export", path, "--group", "--format", "csv").stdout)))
    assert rows and all(r["best_test_accuracy_std"] == "" and r["best_test_accuracy_mean"] for r in rows)


LAYOUT_PROBE = """<script>
window.addEventListener("load", () => {
  const heads = [...document.querySelectorAll("#best-trials th")];
  const wrap = document.querySelector(".table-wrap").getBoundingClientRect();
  const columns = heads.map(th => { const r = th.getBoundingClientRect(); return [th.textContent, r.left, r.right]; });
  document.body.setAttribute("data-layout", JSON.stringify(
    {columns, wrap: [wrap.left, wrap.right], page: document.documentElement.scrollWidth}));
});
</script></body>"""


def test_the_report_shows_trial_metric_and_the_number_to_quote_at_1280_px(tmp_path):
    """Headless Chromium lays the page out 1280 px wide; a probe added to a
    copy of the report (the report itself has no scripts) reads where the
    table's columns fall."""
    import subprocess


    grid = {"model": ["resnet18", "preact_resnet18"], "runtime_transform_script": SCRIPTS,
            "optimizer": ["sgd", "adamw"], "learning_rate": [0.0123456, 0.1], "momentum": [0.9],
            "weight_decay": [5.0e-5, 1.0e-3]}
    path = make_experiment(tmp_path, grid, statuses={1: ("ERROR", 1)})
    page = build_report(load_experiment(path))
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", LAYOUT_PROBE))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120)
    found = re.search(r'data-layout="([^"]*)"', dom.stdout)
    assert dom.returncode == 0 and found, dom.stderr[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    columns = {name: (left, right) for name, left, right in layout["columns"]}
    first = ["trial_id", "best_test_accuracy", "test_accuracy_at_best", "status"]
    assert [name for name, _, _ in layout["columns"]][:4] == first
    for name in first:  # in view without scrolling sideways
        assert columns[name][1] <= min(1280, layout["wrap"][1]), (name, columns[name], layout["wrap"])
    assert layout["page"] <= 1280  # the page itself never scrolls sideways; the table may, inside its box
