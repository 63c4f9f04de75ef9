"""Hostile and careless input that needs real drivers on Ray: one driver per experiment,
a trial larger than any node, a trial past its time limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tune_pipeline.experiment import load_experiment

from conftest import TINY, run_tune, wait_until, write_sweep

pytestmark = pytest.mark.slow

ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def _start(*args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tune_pipeline", *map(str, args)], cwd=cwd,
                            env=dict(os.environ, **ENV, TUNE_PIPELINE_CACHE=str(cwd / "cache")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)



def test_two_drivers_on_one_experiment(tmp_path):
    """Two `tune search --name X` at once: one runs it, the other gets one line.
    While it runs, `tune resume X` is refused naming the holder; then every
    trial's epochs are 1..N once each."""
    gate = tmp_path / "gate"
    gate.write_text("hold")
    script = tmp_path / "gated.py"
    # Trials wait at their first batch until the test opens the gate: the
    # sweep is certainly still running while the second drivers try.
    script.write_text(
        "import os, time\nfrom tune_pipeline import augment as A\n"
        f"GATE = {str(gate)!r}\n"
        "def train_transform(images, ctx):\n"
        "    while os.path.exists(GATE):\n        time.sleep(0.1)\n"
        "    return A.normalize(images, ctx.mean, ctx.std)\n"
        "def test_transform(images, ctx):\n    return A.normalize(images, ctx.mean, ctx.std)\n")
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.01, 0.05]}, "epochs": {"value": 2},
                                   "lr_scheduler": {"value": "none"},
                                   "runtime_transform_script": {"value": str(script)}})
    args = ("search", space, "--name", "x", "--storage-path", tmp_path / "store", *TINY)
    drivers = [_start(*args, cwd=tmp_path), _start(*args, cwd=tmp_path)]
    experiment = tmp_path / "store" / "x"
    try:
        wait_until(lambda: any(d.poll() is not None for d in drivers), 300, "the losing driver to exit")
        loser = next(d for d in drivers if d.poll() is not None)
        winner = next(d for d in drivers if d is not loser)
        out, err = loser.communicate()
        assert loser.returncode == 2, out + err
        assert "Traceback" not in err and "already exists" in err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err

        wait_until(lambda: (experiment / "driver.lock").exists(), 300, "the winner's lock")
        resume = run_tune("resume", experiment, cwd=tmp_path, env=ENV)
        assert resume.returncode == 2, resume.stdout + resume.stderr
        assert f"pid {winner.pid}" in resume.stderr and "another driver" in resume.stderr
        assert "Traceback" not in resume.stderr
    finally:
        gate.unlink()
    out, err = winner.communicate(timeout=600)
    assert winner.returncode == 0, out + err
    assert not (experiment / "driver.lock").exists()
    trials = load_experiment(experiment).trials
    assert len(trials) == 2
    for trial in trials:
        assert [row["epoch"] for row in trial.history] == [1, 2]


def test_a_trial_larger_than_every_node_is_one_line_before_any_folder(tmp_path):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    result = run_tune("search", space, "--name", "big", "--storage-path", tmp_path / "store",
                      "--cpus-per-trial", "64", cwd=tmp_path, env=ENV)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"a trial needs 64 CPUs; the largest node has {os.cpu_count()}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store" / "big").exists()


def test_trials_that_hang_fail_at_their_timeout_and_the_sweep_ends(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(
        "import time\nfrom tune_pipeline import augment as A\n"
        "def train_transform(images, ctx):\n    while True:\n        time.sleep(0.05)\n"
        "def test_transform(images, ctx):\n    return A.normalize(images, ctx.mean, ctx.std)\n")
    space = write_sweep(tmp_path, {"runtime_transform_script": {"value": str(script)},
                                   "seed": {"values": [0, 1]}, "epochs": {"value": 1},
                                   "trial_timeout": {"value": 2.0}})
    result = run_tune("search", space, "--name", "t", "--storage-path", tmp_path / "store", *TINY,
                      cwd=tmp_path, env=ENV)
    assert result.returncode == 1, result.stdout + result.stderr
    exp = load_experiment(tmp_path / "store" / "t")
    assert exp.status_counts() == {"ERROR": 2}
    for trial in exp.failed_trials():
        assert "trial_timeout: still running after 2 s" in trial.error


def test_rays_cannot_be_scheduled_later_ends_the_sweep_with_one_line(tmp_path):
    """As if a node left after the start check: Ray only warns and waits
    forever; the sweep stops with the same kind of line instead."""
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys\nfrom tune_pipeline import sweep\n"
        "sweep.check_fits_cluster = lambda ray, resources: None  # the node 'left' after this check\n"
        "from tune_pipeline.cli import main\n"
        f"sys.argv = ['tune', 'search', {str(space)!r}, '--name', 'u', '--storage-path', "
        f"{str(tmp_path / 'store')!r}, '--cpus-per-trial', '{os.cpu_count() + 1}']\n"
        "main()\n")
    result = subprocess.run([sys.executable, str(driver)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, **ENV, TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S="2"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"no trial can be scheduled: a trial needs {os.cpu_count() + 1} CPUs and 0 GPUs; "
            f"the largest node now has {os.cpu_count()} CPUs") in result.stderr
    assert "Traceback" not in result.stderr
