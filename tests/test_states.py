"""One vocabulary of trial states: the live table, the final summary,
`tune status`, export and the report say the same words, and a sweep whose
driver stopped (Ctrl-C, killed) calls its unfinished trials interrupted."""

import csv
import io
import json
import os
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.experiment import STATES, driver_running, load_experiment, state_name
from tune_pipeline.lock import LOCK_FILE

from conftest import TINY, run_tune, start_tune, wait_until, write_sweep
from fake_experiment import QUICKSTART_GRID, make_experiment


@pytest.mark.parametrize("status, epochs, live, expected", [
    ("TERMINATED", 3, False, "finished"), ("TERMINATED", 1, True, "stopped early"), ("ERROR", 1, True, "failed"),
    ("RUNNING", 1, True, "running"), ("RUNNING", 1, False, "interrupted"), ("RUNNING", 0, False, "interrupted"),
    ("PENDING", 0, True, "pending"), ("PENDING", 0, False, "pending"), ("PAUSED", 2, False, "interrupted")])
def test_ray_statuses_in_our_words(status, epochs, live, expected):
    assert state_name(status, epochs, 3, live) == expected
    assert expected in STATES


def export_states(path):
    done = CliRunner().invoke(app, ["export", str(path), "--format", "csv"])
    assert done.exit_code == 0, done.output
    return {r["trial_id"]: r["status"] for r in csv.DictReader(io.StringIO(done.stdout))}


def status_of(path) -> str:
    """`tune status`, in this process: a reader needs no fresh interpreter."""
    shown = CliRunner().invoke(app, ["status", str(path)])
    assert shown.exit_code == 0, shown.output
    return shown.stdout


def test_a_killed_driver_leaves_its_running_trials_interrupted(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={2: ("RUNNING", 1), 3: ("PENDING", 0)}, live=True)
    assert driver_running(path)
    assert load_experiment(path).state_counts() == {"pending": 1, "finished": 2, "running": 1}
    live = status_of(path)
    assert f"driver: pid {os.getpid()} on" in live and "tune resume" not in live  # who holds it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = path / LOCK_FILE
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "pid": dead.pid}))
    assert not driver_running(path)
    status = status_of(path)
    assert "interrupted ab12c_00002: epoch 1/3" in status and "running" not in status
    assert f"tune resume {path}" in status
    assert export_states(path)["ab12c_00002"] == "interrupted"


@pytest.mark.slow
def test_after_ctrl_c_table_status_export_and_report_say_interrupted(tmp_path):
    # Long enough to outlast Ray's first state save, which is when results reach the experiment folder.
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.01, 0.02, 0.05]}, "epochs": {"value": 40}})
    driver = start_tune("search", space, "--name", "stopped", "--storage-path", tmp_path,
                        "--max-concurrent", "1", *TINY, cwd=tmp_path)
    experiment_dir = tmp_path / "stopped"
    wait_until(lambda: any(p.read_text() for p in experiment_dir.glob("trial_*/result.json")), 300,
               "the first result", process=driver)
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130, output
    assert "Traceback" not in output and "terminated" not in output.lower()
    table = [line for line in output.splitlines() if line.split()[:2][-1:] == ["int"]]
    assert table, output  # the final table's row, in the state's short form
    assert "1 interrupted (int)" in output
    status = run_tune("status", experiment_dir)
    assert "interrupted" in status.stdout and "running" not in status.stdout, status.stdout
    assert "interrupted" in export_states(experiment_dir).values()
    report = run_tune("report", experiment_dir, "--output", tmp_path / "r.html")
    assert report.returncode == 0 and "interrupted" in (tmp_path / "r.html").read_text()
