"""One self-contained HTML file describing an experiment: images embedded as
data URIs, no scripts, no network needed to open it."""

from __future__ import annotations

import base64
import html
import tempfile
from datetime import datetime
from pathlib import Path

import yaml

from tune_pipeline.experiment import FAILED_STATE, Experiment, describe_counts
from tune_pipeline.export import best_column, best_trial_rows, display_rows, ranking_note, value_labels
from tune_pipeline.metrics import QUOTED
from tune_pipeline.plots import FIGURES, NothingToPlot, plot_all
from tune_pipeline.summary import winner_summary

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1a1a1a; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #555; }
table { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
td { white-space: nowrap; }  /* one line per trial; the box scrolls sideways for the later columns */
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.table-wrap { max-height: 32rem; overflow: auto; }
pre { background: #f7f7f7; padding: 0.8rem; overflow: auto; font-size: 0.8rem; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0 1.5rem; }
.empty { padding: 1rem; background: #fff4e5; border-left: 4px solid #E69F00; }
.failed td { color: #8a2b00; }
"""

def first_columns(columns: list[str], metric: str, swept: list[str]) -> list[str]:
    """What a reader looks for first, where a 1280-px window shows it without
    scrolling: the trial, the ranking metric's best, the number to quote, the
    state and the swept values; then the rest in export's order."""
    first = ["trial_id", best_column(metric), QUOTED, "status", "epochs_done", *swept]
    front = [c for c in dict.fromkeys(first) if c in columns]
    return front + [c for c in columns if c not in front]


def _table(rows: list[dict], by: dict, metric: str, swept: list[str]) -> str:
    """Export's table: the same columns, the same cells as its markdown, the
    ones a reader looks for first (first_columns)."""
    if not rows:
        return '<p class="empty">No trial has started yet.</p>'
    columns = first_columns(list(rows[0]), metric, swept)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f'<tr{" class=failed" if r.get("status") == FAILED_STATE else ""}>'
        + "".join(f'<td{" class=num" if isinstance(r.get(c), (int, float)) else ""}>{html.escape(cells[c])}</td>'
                  for c in columns) + "</tr>"
        for r, cells in zip(rows, display_rows(rows, by)))
    return (f'<div class="table-wrap"><table id="best-trials"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _dates(experiment: Experiment) -> tuple[str, str]:
    created = experiment.record.created or ""
    files = list(experiment.path.glob("trial_*/result.json")) or [experiment.path]
    latest = datetime.fromtimestamp(max(f.stat().st_mtime for f in files)).isoformat(timespec="seconds")
    return created, latest


def build_report(experiment: Experiment, metric: str | None = None, top: int = 5) -> str:
    created, latest = _dates(experiment)
    figures_html = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            written = plot_all(experiment, Path(folder), metric, top)
        except NothingToPlot as exc:
            written = {}
            figures_html.append(f'<p class="empty">No plots: {html.escape(str(exc))} '
                                f"(every trial failed or none has finished an epoch).</p>")
        for key, figure in FIGURES.items():
            if key in written:
                data = base64.b64encode(written[key].read_bytes()).decode()
                figures_html.append(f"<h3>{figure.title}</h3>"
                                    f'<img alt="{figure.title}" src="data:image/png;base64,{data}">')
    failed = experiment.failed_trials()
    failed_html = ("<ul>" + "".join(f"<li><code>{html.escape(t.trial_id)}</code>: {html.escape(t.error or '')}</li>"
                                    for t in failed) + "</ul>") if failed else "<p>None.</p>"
    space = yaml.safe_dump(experiment.record.space or {}, sort_keys=False)
    overrides = experiment.record.overrides
    count_text = describe_counts(experiment.state_counts()) or "no trials yet"
    rows = best_trial_rows(experiment, metric)
    summary = winner_summary(experiment, metric)
    title = html.escape(experiment.name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: tune_pipeline report</title><style>{CSS}</style></head>
<body>
<h1>{title}</h1>
<p class="meta">metric <b>{html.escape(metric or experiment.metric)}</b> ({html.escape(experiment.mode_for(metric or experiment.metric))}) ·
method {html.escape(experiment.record.method or '')} · created {html.escape(created)} ·
last result {html.escape(latest)}<br>
{max(experiment.record.trial_count or 0, len(experiment.trials))} trials:
<span id="trial-counts">{html.escape(count_text)}</span><br>
folder <code>{html.escape(str(experiment.path))}</code></p>
<h2>Best trials</h2>
<p class="meta" id="winner">{summary.html() if summary else "No trial has a result yet."}<br>
{html.escape(ranking_note(experiment, metric))}</p>
{_table(rows, value_labels(experiment), metric or experiment.metric, experiment.swept)}
<h2>Plots</h2>
{''.join(figures_html)}
<h2>Failed trials</h2>
{failed_html}
<h2>Search space</h2>
<p class="meta">from <code>{html.escape(experiment.record.space_file or '')}</code>
{('with --set ' + html.escape(' '.join(overrides))) if overrides else ''}</p>
<pre>{html.escape(space)}</pre>
</body></html>
"""


def write_report(experiment: Experiment, output: Path, metric: str | None = None, top: int = 5) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(build_report(experiment, metric, top))
    return output
