"""Sweeps end to end on Ray (limited to 2 CPUs), as a user runs them."""

import json
import os
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tune_pipeline.experiment import load_experiment

from conftest import TINY, kill_group, run_tune, start_tune, wait_until, write_sweep as sweep_file

pytestmark = pytest.mark.slow


def test_quickstart_end_to_end_then_export_every_format(tmp_path):
    result = run_tune("search", "quickstart", "--name", "qs",
                      "--storage-path", tmp_path, "--set", "epochs=2", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    experiment_dir = tmp_path / "qs"
    assert "best trial" in result.stdout and str(experiment_dir) in result.stdout
    assert "Traceback" not in result.stderr

    exp = load_experiment(experiment_dir)
    assert exp.status_counts() == {"TERMINATED": 4}
    assert all(t.epochs == 2 for t in exp.trials)

    md = run_tune("export", experiment_dir)
    assert md.returncode == 0
    header = md.stdout.splitlines()[0]
    assert header.startswith("| config | best_train_accuracy | best_test_accuracy | best_loss | best_test_loss |")
    assert len([line for line in md.stdout.splitlines() if line.startswith("|")]) == 2 + 4
    assert md.stdout.strip().splitlines()[-1].startswith("ranked by val_accuracy")

    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"best.{fmt}"
        done = run_tune("export", experiment_dir, "--output", out, "--top", "3")
        assert done.returncode == 0, done.stderr
        assert out.exists() and out.stat().st_size > 0
    table = pq.read_table(tmp_path / "best.parquet")
    assert table.num_rows == 3
    assert table.column_names[:5] == ["config", "best_train_accuracy", "best_test_accuracy", "best_loss",
                                      "best_test_loss"]
    assert {"learning_rate", "runtime_transform_script", "status", "epochs_done", "checkpoint"} <= set(table.column_names)
    # Ranked by the sweep's metric (val_accuracy, its running best in best_val_accuracy),
    # never by test accuracy: choosing by the test set is what the split exists to avoid.
    ranking = table.column("best_val_accuracy").to_pylist()
    assert ranking == sorted(ranking, reverse=True)
    rows = json.loads((tmp_path / "best.json").read_text())
    assert len(rows) == 3 and all(os.path.isdir(r["checkpoint"]) for r in rows)

    again = run_tune("search", "quickstart", "--name", "qs",
                     "--storage-path", tmp_path, "--dry-run")
    assert again.returncode == 0  # a dry run starts nothing, so the name does not matter
    clash = run_tune("search", "quickstart", "--name", "qs",
                     "--storage-path", tmp_path)
    assert clash.returncode == 2 and "tune resume" in clash.stderr


def test_asha_stops_some_trials_early_and_a_diverging_trial_fails(asha_experiment):
    experiment_dir, result = asha_experiment
    assert result.returncode == 1, result.stdout + result.stderr  # one trial failed
    exp = load_experiment(experiment_dir)
    failed = exp.failed_trials()
    assert len(failed) == 1 and failed[0].config["learning_rate"] == 1.0e12
    assert "RunFailed" in failed[0].error and "diverged" in failed[0].error
    finished = [t for t in exp.trials if t.status == "TERMINATED"]
    assert len(finished) == 5
    assert any(t.epochs < 4 for t in finished), [t.epochs for t in finished]  # stopped early
    assert any(t.epochs == 4 for t in finished)
    assert "diverged" in result.stdout

    status = run_tune("status", experiment_dir)
    assert status.returncode == 0
    assert "stopped early" in status.stdout and "1 failed" in status.stdout and "diverged" in status.stdout


EPOCHS_KILLED = 10


def test_sigkill_then_resume_finishes_without_rerunning(tmp_path):
    # A trial's status reaches the experiment folder at Ray's state saves, every
    # 10 s by default: the whole sweep can finish between two (4 trials in 14 s in
    # a CI run).  Saved at every step here, so the moment waited for is seen.
    space = sweep_file(tmp_path, {"learning_rate": {"values": [0.01, 0.02, 0.05, 0.1]},
                                  "epochs": {"value": EPOCHS_KILLED}})
    driver = start_tune("search", space, "--name", "killed", "--storage-path", tmp_path,
                        "--max-concurrent", "1", *TINY, cwd=tmp_path,
                        env={"TUNE_PIPELINE_CACHE": str(tmp_path / "cache"), "TUNE_GLOBAL_CHECKPOINT_S": "0"},
                        start_new_session=True)
    experiment_dir = tmp_path / "killed"

    def some_finished_and_one_running():
        if not (experiment_dir / "tune_pipeline.json").exists():
            return False
        exp = load_experiment(experiment_dir)
        counts = exp.status_counts()
        return counts.get("TERMINATED", 0) >= 1 and any(t.history for t in exp.trials if t.status != "TERMINATED")

    try:
        wait_until(some_finished_and_one_running, 300, "a finished trial", process=driver)
        # Frozen where it stands (the driver and its Ray: one process group), so the
        # trials left cannot finish while `tune status` starts: 10 epochs take 3 s here,
        # and all four had finished by the kill in a loaded run.
        kill_group(driver, signal.SIGSTOP)
        status = run_tune("status", experiment_dir)  # on a running sweep
        assert status.returncode == 0 and "finished" in status.stdout
        assert "best so far" in status.stdout
    finally:
        kill_group(driver)
    before = load_experiment(experiment_dir)
    finished = {t.trial_id: (t.path / "result.json").read_text() for t in before.trials
                if t.status == "TERMINATED"}
    assert 1 <= len(finished) < 4

    resumed = run_tune("resume", experiment_dir, env={"TUNE_PIPELINE_CACHE": str(tmp_path / "cache")})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = load_experiment(experiment_dir)
    assert after.status_counts() == {"TERMINATED": 4}
    for trial in after.trials:
        assert trial.epochs == EPOCHS_KILLED
        assert [h["training_iteration"] for h in trial.history] == list(range(1, EPOCHS_KILLED + 1))  # not restarted
        if trial.trial_id in finished:
            assert (trial.path / "result.json").read_text() == finished[trial.trial_id]
    export = run_tune("export", experiment_dir, "--format", "csv")
    assert export.returncode == 0 and len(export.stdout.strip().splitlines()) == 5


def test_wandb_logs_offline_without_a_key(tmp_path):
    space = sweep_file(tmp_path, {"learning_rate": {"values": [0.05]}, "epochs": {"value": 1}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no ~/.netrc, no cached login
    result = subprocess.run(
        [sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "wb", "--storage-path",
         str(tmp_path), "--wandb", "--wandb-project", "tp-test", *TINY],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = list((tmp_path / "wb").glob("trial_*/wandb/offline-run-*"))
    assert len(runs) == 1
    assert f"wandb: offline, 1 run in {tmp_path / 'wb'}/trial_*/wandb/offline-run-*" in result.stdout
    assert "wandb sync" in result.stdout and "core_worker" not in result.stdout + result.stderr
    assert list(runs[0].glob("*.wandb"))  # the run's data, ready for `wandb sync`


def test_dashboard_refuses_to_expose_itself_without_a_flag():
    result = run_tune("dashboard", "--host", "0.0.0.0")
    assert result.returncode == 2 and "--allow-remote" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_dataset_stops_the_sweep_before_ray_starts(tmp_path):
    space = sweep_file(tmp_path, {"dataset": {"value": "cifar10"}, "data_dir": {"value": "nowhere"},
                                  "learning_rate": {"values": [0.1, 0.01]}})
    result = run_tune("search", space, "--name", "nodata", "--storage-path", tmp_path, cwd=tmp_path)
    assert result.returncode == 2
    assert "cifar-10-python.tar.gz" in result.stderr and str(tmp_path / "nowhere") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nodata").exists()
