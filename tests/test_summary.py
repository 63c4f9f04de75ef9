"""summary.py: the winner is worded once, and the sweep's last lines,
`tune status`, `tune report`'s line and the HTML report all show it."""

import html
import io

from rich.console import Console
from typer.testing import CliRunner

from fake_experiment import QUICKSTART_GRID, make_experiment
from tune_pipeline.cli import app
from tune_pipeline.experiment import load_experiment
from tune_pipeline.sweep_console import SweepConsole
from tune_pipeline.report import build_report
from tune_pipeline.summary import winner_summary


def _finish_text(experiment) -> str:
    out = io.StringIO()
    console = SweepConsole(console=Console(width=80, height=30, file=out, force_terminal=True, color_system=None))
    console.finish(experiment, experiment.best_trial(), False, 12)
    return out.getvalue()


def test_the_sweeps_end_status_report_and_its_line_say_the_same_words(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID)
    experiment = load_experiment(path)
    experiment.live = False
    summary = winner_summary(experiment)
    lines = summary.lines()
    best = experiment.best_trial()
    assert lines[0].startswith(f"best trial {best.trial_id}: test_accuracy ")
    assert lines[-1].startswith("  to quote: test_accuracy_at_best ") and "selected on test data" in lines[-1]
    assert all(len(line) <= 80 for line in lines if "config:" not in line)  # whole on an 80-column terminal

    block = "\n".join(lines)
    assert "\n".join(summary.lines(80)) in _finish_text(experiment)  # a terminal: wrapped at its width
    status = CliRunner().invoke(app, ["status", str(path)], terminal_width=80, env={"COLUMNS": "80"})
    assert status.exit_code == 0 and block in status.output, status.output
    report = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "r.html")])
    assert report.exit_code == 0 and block in report.output, report.output
    page = build_report(experiment)
    assert all(html.escape(line.strip()) in page for line in lines)


def test_while_trials_may_still_change_the_ranking_the_winner_is_the_best_so_far(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={0: ("RUNNING", 1), 3: ("PENDING", 0)})
    experiment = load_experiment(path)
    experiment.live = False
    headline = winner_summary(experiment).headline
    assert headline.startswith("best so far ")
    best = experiment.best_trial()
    if experiment.state(best) != "finished":
        assert f"({experiment.state(best)} at epoch {best.epochs})" in headline


def test_another_metric_ranks_by_its_own_goal(tmp_path):
    experiment = load_experiment(make_experiment(tmp_path, QUICKSTART_GRID))
    losses = {t.trial_id: t.best_value("test_loss", "min") for t in experiment.trials}
    summary = winner_summary(experiment, "test_loss")
    assert summary.headline.split()[2].rstrip(":") == min(losses, key=losses.get)


def test_no_result_yet_no_summary(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={i: ("PENDING", 0) for i in range(4)})
    assert winner_summary(load_experiment(path)) is None


def test_on_a_narrow_terminal_the_summary_wraps_between_words_and_keeps_paths_whole(tmp_path):
    experiment = load_experiment(make_experiment(tmp_path, QUICKSTART_GRID))
    experiment.live = False
    summary = winner_summary(experiment)
    whole, narrow = summary.lines(), summary.lines(40)
    assert len(narrow) > len(whole)
    assert " ".join(narrow).split() == " ".join(whole).split()  # the same words, in order, none cut
    for line in narrow:
        assert len(line) <= 40 or len(line.split()) == 1, line  # longer only for one unbreakable word
        assert line.startswith("  ") or line is narrow[0]  # what wraps stays indented under its line
    config = str(experiment.best_trial().path / "params.json")
    assert any(line.strip() == config for line in narrow) or any(line.endswith(config) for line in narrow)
