"""`tune dashboard` starts a head, sweeps on the machine run on it and show in
its API, and `--stop` stops that head only."""

import json
import subprocess
import sys
import urllib.request

import pytest

from tune_pipeline import cluster

from conftest import TINY, run_tune, write_sweep

PORT = 8297


def test_stop_with_nothing_running_says_so(monkeypatch):
    monkeypatch.setattr(cluster, "running_sessions", lambda: [])
    assert cluster.stop_head() == (0, "no Ray head started by `tune dashboard` is running; nothing to stop")
    monkeypatch.setattr(cluster, "running_sessions", lambda: ["/tmp/ray/session_x"])
    code, message = cluster.stop_head()
    assert code == 2 and "ray stop" in message and "session_x" in message


def api(path, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.mark.slow
def test_sweep_shows_in_the_dashboard_and_stop_leaves_other_rays_running(tmp_path):
    started = run_tune("dashboard", "--port", PORT, "--show-token")
    other = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"dashboard: http://127.0.0.1:{PORT}" in started.stdout
        token = None
        if "log in with the token: " in started.stdout:  # this Ray uses token authentication
            token = started.stdout.split("log in with the token: ", 1)[1].split()[0]
        space = write_sweep(tmp_path, {"learning_rate": {"values": [0.05, 0.01]}, "epochs": {"value": 1}})
        sweep = run_tune("search", space, "--name", "on-dashboard", "--storage-path", tmp_path, *TINY)
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr
        jobs = [j for j in api("/api/jobs/", token) if "on-dashboard" in (j.get("entrypoint") or "")]
        assert len(jobs) == 1, "the sweep's driver is not among the dashboard's jobs"
        actors = api("/api/v0/actors?detail=1&limit=1000", token)["data"]["result"]["result"]
        trials = [a for a in actors if a.get("job_id") == jobs[0]["job_id"] and a.get("repr_name") == "train_trial"]
        assert trials, "the dashboard lists none of the sweep's trials"

        # Another Ray on this machine, not started by `tune dashboard`.
        other = subprocess.Popen(
            [sys.executable, "-c", "import ray, sys\nray.init(address='local', include_dashboard=False)\n"
             "print('up', flush=True)\nsys.stdin.readline()\n"
             "print(ray.get(ray.remote(lambda: 'still running').remote()), flush=True)"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert other.stdout.readline().strip() == "up"
        stopped = run_tune("dashboard", "--stop")
        assert stopped.returncode == 0 and "stopped the Ray head `tune dashboard` started" in stopped.stdout
        assert "gcs_server" in stopped.stdout and "raylet" in stopped.stdout
        output, _ = other.communicate("go\n", timeout=120)
        assert other.returncode == 0 and "still running" in output
    finally:
        if other is not None and other.poll() is None:
            other.kill()
        run_tune("dashboard", "--stop")


@pytest.mark.slow
def test_stop_refuses_a_ray_it_did_not_start():
    other = subprocess.Popen(
        [sys.executable, "-c", "import ray, sys\nray.init(address='local', include_dashboard=False)\n"
         "print('up', flush=True)\nsys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert other.stdout.readline().strip() == "up"
        stopped = run_tune("dashboard", "--stop")
        assert stopped.returncode == 2 and "ray stop" in stopped.stderr
        assert len(stopped.stderr.strip().splitlines()) == 1
        assert other.poll() is None
    finally:
        other.communicate("\n", timeout=60)
