"""tune plot and tune report on real small experiments, and their edge cases."""

import json
import shutil
import struct
import subprocess

import pytest

from tune_pipeline.experiment import load_experiment
from tune_pipeline.plots import FIGURE_FILES, importance

from conftest import TINY, chromium, run_tune, write_sweep

pytestmark = pytest.mark.slow


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def failed_experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("failed")
    space = write_sweep(folder, {"learning_rate": {"value": 1.0e12}, "lr_scheduler": {"value": "none"},
                                 "epochs": {"value": 2}})
    result = run_tune("search", space, "--name", "allfail", "--storage-path", folder, *TINY, cwd=folder)
    assert result.returncode == 1
    return folder / "allfail"


def test_plot_writes_every_figure(asha_experiment, tmp_path):
    experiment_dir, _ = asha_experiment
    result = run_tune("plot", experiment_dir, "--output", tmp_path / "plots", "--top", "3")
    assert result.returncode == 0, result.stderr
    for name in FIGURE_FILES.values():
        path = tmp_path / "plots" / name
        assert str(path) in result.stdout
        width, height = png_size(path)
        assert 500 <= width <= 3000 and 300 <= height <= 3000
        assert path.stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_a_diverging_trial_is_one_line_with_its_error_file(asha_experiment):
    experiment_dir, result = asha_experiment
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    failed = [line for line in output.splitlines() if "diverged" in line]
    assert len(failed) == 2  # as it happens, and in the summary
    assert all(str(experiment_dir) in line and "error.txt" in line for line in failed)


def test_importance_credits_the_parameter_that_varied(asha_experiment):
    experiment_dir, _ = asha_experiment
    experiment = load_experiment(experiment_dir)
    shares = importance(experiment)
    assert set(shares) == {"learning_rate"}  # momentum had one value: not a dimension
    assert shares["learning_rate"] > 0.5  # the only thing that differed explains most
    # a column that does not vary explains nothing
    experiment.record.swept = ["learning_rate", "model"]
    assert importance(experiment)["model"] == 0.0


def test_report_is_one_self_contained_file(asha_experiment, tmp_path):
    experiment_dir, _ = asha_experiment
    out = tmp_path / "report.html"
    result = run_tune("report", experiment_dir, "--output", out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.count("data:image/png;base64,") == len(FIGURE_FILES)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    for fragment in ("asha", "best_test_accuracy", "diverged", "learning_rate", "stopped early", "1 failed",
                     "<th>checkpoint</th>", "<th>error</th>"):
        assert fragment in text


def test_plots_of_a_single_trial_and_of_a_running_experiment(asha_experiment, tmp_path):
    experiment_dir, _ = asha_experiment
    # One trial: keep the best one only, as if the sweep had one configuration.
    single = tmp_path / "single"
    shutil.copytree(experiment_dir, single)
    exp = load_experiment(single)
    keep = exp.best_trial().trial_id
    for state_file in single.glob("experiment_state-*.json"):
        state = json.loads(state_file.read_text())
        state["trial_data"] = [t for t in state["trial_data"] if json.loads(t[0])["trial_id"] == keep]
        state_file.write_text(json.dumps(state))
    for trial_dir in single.glob("trial_*"):
        if not trial_dir.name.endswith(keep):
            shutil.rmtree(trial_dir)
    result = run_tune("plot", single)
    assert result.returncode == 0, result.stderr
    assert (single / "plots" / "learning_curves.png").exists()
    assert run_tune("report", single).returncode == 0

    # Running: a trial with no state entry yet, found by its folder alone.
    running = tmp_path / "running"
    shutil.copytree(experiment_dir, running)
    for state_file in running.glob("experiment_state-*.json"):
        state_file.unlink()
    exp = load_experiment(running)
    assert {t.status for t in exp.trials} == {"RUNNING"} and len(exp.trials) == 6
    assert run_tune("plot", running).returncode == 0
    assert run_tune("report", running).returncode == 0


def test_every_trial_failed_gives_a_message_not_a_picture(failed_experiment, tmp_path):
    result = run_tune("plot", failed_experiment, "--output", tmp_path / "p")
    assert result.returncode == 1
    assert "nothing to plot" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    report = run_tune("report", failed_experiment, "--output", tmp_path / "r.html")
    assert report.returncode == 0
    text = (tmp_path / "r.html").read_text()
    assert "No plots" in text and "diverged" in text and "data:image/png" not in text


def test_report_opens_in_headless_chromium(asha_experiment, tmp_path):
    experiment_dir, _ = asha_experiment
    out = tmp_path / "report.html"
    assert run_tune("report", experiment_dir, "--output", out).returncode == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    # Every figure decodes in the browser: a script added to a copy marks each
    # <img> by its decoded width once the page has loaded (a broken one has none).
    checked = tmp_path / "checked.html"
    checked.write_text(out.read_text().replace("</body>", (
        "<script>window.addEventListener('load', () => document.body.setAttribute('data-figures',"
        " Array.from(document.images, i => i.naturalWidth > 0 ? 'drawn' : 'broken').join(' ')))"
        "</script></body>"), 1))
    dom = subprocess.run([chromium(), *flags, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="best-trials"' in dom.stdout and "best_test_accuracy" in dom.stdout
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line]
    assert not console_errors, console_errors
    assert 'data-figures="' in dom.stdout, dom.stderr[-2000:]  # the page loaded and the check ran
    figures = dom.stdout.split('data-figures="', 1)[1].split('"', 1)[0].split()
    assert figures == ["drawn"] * out.read_text().count('<img alt="'), figures
    assert len(figures) >= 2
