"""Experiments on S3-compatible storage, against a real S3 protocol server
(moto's, on loopback): the sweep writes into a bucket, a killed driver is
resumed from another folder, and every reader works from the bucket."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import (BUCKET, TINY, free_port, kill_group, run_tune, s3_objects, start_cluster_head, wait_until,
                      write_sweep)

def test_remote_path_reads_like_a_local_folder(s3_env):
    import boto3

    from tune_pipeline.storage import RemotePath, location

    client = boto3.client("s3")
    for key in ("unit/a/trial_1/result.json", "unit/a/trial_2/result.json", "unit/a/trial_2/params.json",
                "unit/a/experiment_state-2.json", "unit/a/experiment_state-1.json"):
        client.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    root = location(f"s3://{BUCKET}/unit/a")
    assert isinstance(root, RemotePath) and str(root) == f"s3://{BUCKET}/unit/a"
    assert root.is_dir() and root.exists() and not root.is_file()
    assert [p.name for p in root.glob("experiment_state-*.json")] == ["experiment_state-1.json",
                                                                     "experiment_state-2.json"]
    assert [str(p) for p in root.glob("trial_*/params.json")] == [f"s3://{BUCKET}/unit/a/trial_2/params.json"]
    assert (root / "trial_1" / "result.json").read_text() == "unit/a/trial_1/result.json"
    assert not (root / "missing").exists()
    (root / "written.json").write_text("{}")
    assert (root / "written.json").is_file() and root.name == "a" and str(root.parent).endswith("/unit")


def test_missing_remote_experiment_is_one_line(s3_env):
    result = run_tune("status", f"s3://{BUCKET}/nowhere/exp", env=s3_env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ray_client_address_is_refused_with_one_line(tmp_path):
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.05, 0.1]}})
    result = run_tune("search", space, "--address", "ray://127.0.0.1:10001", "--storage-path", tmp_path,
                      cwd=tmp_path)
    assert result.returncode == 2 and "ray://" in result.stderr and "not supported" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.glob("space-*"))


@pytest.mark.slow
def test_sweep_in_a_bucket_killed_resumed_elsewhere_and_read_back(s3_env, tmp_path):
    uri = f"s3://{BUCKET}/team/killed"
    start_dir, other_dir = tmp_path / "start", tmp_path / "elsewhere"
    start_dir.mkdir()
    other_dir.mkdir()
    space = write_sweep(start_dir, {"learning_rate": {"values": [0.01, 0.02, 0.05]}, "epochs": {"value": 2}})
    # Ray's state saved (and uploaded) at every step, not every 10 s: results reach the
    # bucket while the sweep runs, however fast its trials are.
    env = dict(os.environ, TUNE_PIPELINE_CACHE=str(tmp_path / "cache"), TUNE_GLOBAL_CHECKPOINT_S="0", **s3_env)
    driver = subprocess.Popen(
        [sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "killed",
         "--storage-path", f"s3://{BUCKET}/team", "--max-concurrent", "1", *TINY],
        cwd=start_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        wait_until(lambda: any(k.endswith("result.json") for k in s3_objects("team/killed/")), 300,
                   "a result in the bucket", process=driver)
    finally:
        kill_group(driver)

    resumed = run_tune("resume", uri, cwd=other_dir, env={"TUNE_PIPELINE_CACHE": str(tmp_path / "cache")})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert uri in resumed.stdout

    keys = s3_objects("team/killed/")
    assert "team/killed/tune_pipeline.json" in keys
    assert sum(k.endswith("/result.json") for k in keys) == 3
    assert any("/checkpoint_" in k for k in keys)  # checkpoints live in the bucket
    # Nothing of the experiment was written where the drivers ran.
    assert sorted(p.name for p in start_dir.iterdir()) == ["space.yaml"]
    assert list(other_dir.iterdir()) == []

    status = run_tune("status", uri, cwd=other_dir)
    assert status.returncode == 0 and "killed: 3 trials; 3 finished" in status.stdout, status.stdout + status.stderr
    remote_md = run_tune("export", uri, cwd=other_dir)
    assert remote_md.returncode == 0, remote_md.stderr
    rows = [line for line in remote_md.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 3
    for row in rows:
        assert f"{uri}/trial_" in row  # the best checkpoint, where it lives

    # The same table as for a local copy of the bucket, but for where checkpoints are.
    import pyarrow.fs

    copy = tmp_path / "copy" / "killed"
    copy.parent.mkdir()
    pyarrow.fs.copy_files(uri, str(copy))
    local_md = run_tune("export", copy, cwd=other_dir)
    assert local_md.returncode == 0, local_md.stderr
    assert remote_md.stdout.replace(uri, str(copy)) == local_md.stdout

    plots = run_tune("plot", uri, cwd=other_dir)
    assert plots.returncode == 0, plots.stderr
    assert (other_dir / "killed" / "plots" / "learning_curves.png").is_file()
    report = run_tune("report", uri, "-o", tmp_path / "report.html", cwd=other_dir)
    assert report.returncode == 0, report.stderr
    assert uri in (tmp_path / "report.html").read_text()


@pytest.mark.slow
def test_a_stale_ray_address_does_not_hang_the_sweep(private_ray_tmpdir, tmp_path):
    """A crashed `ray start --head` leaves its address behind; a bare
    ray.init() would retry it for minutes."""
    address_file = os.path.join(private_ray_tmpdir, "ray", "ray_current_cluster")
    os.makedirs(os.path.dirname(address_file))
    with open(address_file, "w") as f:
        f.write(f"127.0.0.1:{free_port()}")  # nothing listens there
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.05]}, "epochs": {"value": 1}})
    result = run_tune("search", space, "--name", "stale", "--storage-path", tmp_path, *TINY, cwd=tmp_path,
                      timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no Ray head answers" in result.stderr


@pytest.mark.slow
def test_two_nodes_write_one_experiment_to_the_bucket_and_resume_finishes_it(s3_env, private_ray_tmpdir,
                                                                            cluster_utils_environment, tmp_path):
    """Two Ray nodes on loopback (Ray's own cluster utility) and the experiment
    on S3, driven as a user would: `tune search --address`, the driver killed,
    `tune resume --address`.  Trials run on both nodes, the dataset reaches
    the second node through the object store, checkpoints land in the bucket."""
    from tune_pipeline.experiment import load_experiment

    cluster = start_cluster_head()
    cluster.add_node(num_cpus=1)
    uri = f"s3://{BUCKET}/nodes/two"
    try:
        space = write_sweep(tmp_path, {"learning_rate": {"values": [0.01, 0.02, 0.05, 0.1]},
                                       "epochs": {"value": 2}})
        env = dict(os.environ, TUNE_PIPELINE_CACHE=str(tmp_path / "cache"), TUNE_GLOBAL_CHECKPOINT_S="0")
        driver = subprocess.Popen(
            [sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "two",
             "--storage-path", f"s3://{BUCKET}/nodes", "--address", cluster.address, *TINY],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        try:
            wait_until(lambda: any(k.endswith("result.json") for k in s3_objects("nodes/two/")), 300,
                       "a result in the bucket", process=driver)
        finally:
            kill_group(driver)
        resumed = run_tune("resume", uri, "--address", cluster.address, cwd=tmp_path,
                           env={"TUNE_PIPELINE_CACHE": str(tmp_path / "cache")})
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr

        experiment = load_experiment(uri)
        assert experiment.status_counts() == {"TERMINATED": 4}
        assert all(t.epochs == 2 for t in experiment.trials)
        assert len({h["node_id"] for t in experiment.trials for h in t.history}) == 2
        assert all(str(t.best_checkpoint(experiment.metric, experiment.mode)).startswith(uri)
                   for t in experiment.trials)
    finally:
        cluster.shutdown()


def test_a_change_in_rays_state_format_is_one_plain_line(tmp_path):
    """experiment.py reads Ray's private experiment state; if a Ray upgrade
    changes it, the user gets the file and the key, not a KeyError."""
    from tune_pipeline.errors import UserError
    from tune_pipeline.experiment import load_experiment
    from tune_pipeline.ray_state import RAY_FORMAT_TESTED
    from tune_pipeline.experiment_record import METADATA_FILE

    (tmp_path / METADATA_FILE).write_text('{"name": "x"}')
    state = tmp_path / "experiment_state-2026-01-01_00-00-00.json"
    for layout, key in (({"trials": []}, "trial_data"),
                        ({"trial_data": [["{}"]]}, "trial_data[]"),
                        ({"trial_data": [['{"id": 1}', "{}"]]}, "trial_data[]")):
        state.write_text(__import__("json").dumps(layout))
        with pytest.raises(UserError) as caught:
            load_experiment(tmp_path)
        message = caught.value.one_line()
        assert str(state) in message and key in message and RAY_FORMAT_TESTED in message


def test_one_driver_per_experiment_in_a_bucket_too(s3_env):
    from tune_pipeline.errors import UserError
    from tune_pipeline.lock import ExperimentLock
    from tune_pipeline.storage import location

    folder = location(f"s3://{BUCKET}/locked/exp")
    first = ExperimentLock(folder, "tune search").acquire()
    try:
        with pytest.raises(UserError) as refused:
            ExperimentLock(folder, "tune resume").acquire()
        assert f"pid {os.getpid()}" in refused.value.one_line()
    finally:
        first.release()
    assert not (folder / "driver.lock").exists()
    ExperimentLock(folder, "tune resume").acquire().release()
