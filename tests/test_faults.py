"""Faults outside the input file, as a user meets them:
a Ray address that is gone, wandb without its server, a bucket that goes
away mid-sweep, a read-only HOME, output nobody can read, SIGTERM, a damaged
tune_pipeline.json, and input past every sane size.  Each ends in one line
and a known exit code, never a hang or a traceback.

The command-line cases are data: tests/fault_cases/*.yaml, each a command,
what its standard output is (a full disk, a closed pipe), and the one line
and exit code expected; the cases that need a sweep running are below."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tune_pipeline.cli import app

from conftest import TINY, create_bucket, free_port, mounted_tmpfs, run_tune, start_tune, wait_until, write_sweep
from fake_experiment import make_experiment

FAULT_CASES = [pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if "\nslow: true" in path.read_text() else [])
               for path in sorted((Path(__file__).parent / "fault_cases").glob("*.yaml"))]


def _fill(value, names: dict):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _stdout_for(kind: str | None):
    """(what the child's stdout is, what to close after it started)."""
    if kind == "full":
        handle = open("/dev/full", "w")
        return handle, [handle]
    if kind == "closed":  # a pipe whose reader has gone: every write is EPIPE
        read_end, write_end = os.pipe()
        os.close(read_end)
        return write_end, []
    return subprocess.PIPE, []


@pytest.mark.parametrize("path", FAULT_CASES)
def test_fault_case(path, tmp_path):
    case = yaml.safe_load(path.read_text())
    experiment = make_experiment(tmp_path, {"learning_rate": [0.01, 0.1]})
    meta = json.loads((experiment / "tune_pipeline.json").read_text())
    meta.update(space_file=str(tmp_path / "space.yaml"), resources={"cpu": 1.0, "gpu": 0.0},
                resolved_space={"method": "grid"})
    meta.pop(case.get("drop_metadata_key", ""), None)
    (experiment / "tune_pipeline.json").write_text(json.dumps(meta))
    config = tmp_path / "config.yaml"
    config.write_text("dataset: digits\nepochs: 1\nmax_train_images: 128\nmax_test_images: 64\nbatch_size: 64\n")
    names = {"tmp": str(tmp_path), "experiment": str(experiment), "config": str(config),
             "space": str(write_sweep(tmp_path, {"epochs": {"value": 1}})),
             "dead_address": f"127.0.0.1:{free_port()}"}
    case = _fill(case, names)
    stdout, to_close = _stdout_for(case.get("stdout"))
    try:
        result = subprocess.run([sys.executable, "-m", "tune_pipeline", *case["args"]], cwd=tmp_path,
                                env={**os.environ, **case.get("env", {})}, stdout=stdout,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        for handle in to_close:
            handle.close()
        if isinstance(stdout, int) and stdout != subprocess.PIPE:
            os.close(stdout)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == case["exit"], result.stderr
    assert len(lines) == 1 and case["stderr"] in lines[0], result.stderr
    if "stderr_not" in case:
        assert case["stderr_not"] not in result.stderr
    for file in case.get("files", []):
        assert Path(file).exists(), file
    if case["args"][0] == "search" and "files" in case:  # a sweep that ran: it finished
        status = run_tune("status", Path(case["files"][0]).parent)
        assert "finished" in status.stdout and "pending" not in status.stdout, status.stdout

def test_thirty_thousand_unknown_keys_are_one_readable_line(tmp_path):
    """Each problem was listed: one 2.1 MB line."""
    space = tmp_path / "keys.yaml"
    space.write_text("method: grid\n" + "".join(f"unknown_key_{i}: 1\n" for i in range(30_000))
                     + "parameters:\n  learning_rate: {value: 0.1}\n")
    result = CliRunner().invoke(app, ["search", str(space), "--dry-run"])
    assert result.exit_code == 2
    line, = result.output.strip().splitlines()
    assert line.startswith("error: 30,000 problems: ") and "unknown_key_0: unknown top-level key" in line
    assert line.endswith("; and 29,988 more") and len(line) < 3_000


def test_one_huge_value_is_cut_with_the_count_of_the_rest(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("method: grid\nparameters:\n  learning_rate: {value: [" + ", ".join(["1"] * 50_000) + "]}\n")
    result = CliRunner().invoke(app, ["search", str(space), "--dry-run"])
    assert result.exit_code == 2
    line, = result.output.strip().splitlines()
    assert len(line) < 2_200 and "more characters)" in line


class _Silent:
    """A TCP server that accepts and never answers: a firewall, a hung proxy."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def close(self):
        self.socket.close()


def test_wandb_with_a_key_and_no_server_chooses_offline_and_says_so(monkeypatch):
    """It waited 90 s, then logged 'online' and kept nothing."""
    from tune_pipeline import integrations

    silent = _Silent()
    notes = []
    monkeypatch.setattr(integrations, "WANDB_PROBE_SECONDS", 0.5)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", silent.url)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    try:
        mode = integrations.wandb_environment(type("Console", (), {"note": staticmethod(notes.append)}))
    finally:
        silent.close()
    assert mode == "offline" and os.environ["WANDB_MODE"] == "offline"
    assert len(notes) == 1 and f"{silent.url} does not answer" in notes[0] and "wandb sync" in notes[0]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert integrations.wandb_environment() == "disabled"  # the user's word is kept, not made offline


# ---------------------------------------------------------------- with Ray


@pytest.mark.slow
def test_sigterm_stops_a_sweep_and_its_resume_like_ctrl_c(tmp_path):
    """SIGTERM (a scheduler's time limit) ended the driver silently; `tune
    status` then said "2 pending" and no more."""
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.05, 0.1, 0.2]}, "epochs": {"value": 40}},
                        tune={"max_concurrent_trials": 1})
    experiment = tmp_path / "term"
    for command in (["search", space, "--name", "term", "--storage-path", tmp_path, *TINY],
                    ["resume", experiment]):
        before = {p: p.stat().st_size for p in experiment.glob("trial_*/result.json")}
        driver = start_tune(*command, cwd=tmp_path)
        wait_until(lambda: any(p.stat().st_size > before.get(p, 0)
                               for p in experiment.glob("trial_*/result.json")), 300, "a new result",
                   process=driver)
        time.sleep(1)
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=120)
        assert driver.returncode == 130, output
        assert f"interrupted: continue with `tune resume {experiment}`" in output
        assert "Traceback" not in output
    status = run_tune("status", experiment)
    assert "interrupted" in status.stdout and f"continue with: tune resume {experiment}" in status.stdout


@pytest.mark.slow  # trains in a fresh interpreter until the first epoch: seconds
def test_sigterm_in_tune_train_writes_the_summary(tmp_path):
    """A training run killed by SIGTERM kept no summary.json."""
    config = tmp_path / "run.yaml"
    config.write_text("dataset: digits\nepochs: 200\nmax_train_images: 256\nmax_test_images: 64\nbatch_size: 64\n")
    run = start_tune("train", config, "-o", tmp_path, cwd=tmp_path)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)
    reader.start()
    wait_until(lambda: any(line.startswith("epoch 1/") for line in lines), 300, "the first epoch", process=run)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=120)
    reader.join(timeout=30)
    assert run.returncode == 130, "".join(lines)
    assert "error: interrupted by SIGTERM" in "".join(lines)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] >= 1


@pytest.mark.slow
def test_an_address_that_answers_but_is_no_ray_head_is_one_line(tmp_path):
    """Something listens there and never answers (a hung head, a firewall):
    ray.init waited past 300 s with a C++ warning every few seconds."""
    silent = _Silent()
    try:
        space = write_sweep(tmp_path, {"epochs": {"value": 1}})
        result = run_tune("search", space, "--address", silent.url.removeprefix("http://"),
                          "--storage-path", tmp_path, cwd=tmp_path, timeout=300)
    finally:
        silent.close()
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert "does not answer as a Ray head" in line
    assert not list(tmp_path.glob("space-*"))  # nothing was made


@pytest.mark.slow
def test_wandb_disabled_writes_nothing_and_offline_counts_its_runs(tmp_path):
    """WANDB_MODE=disabled was overridden to offline; the end line named
    local copies that did not exist."""
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.05, 0.1]}, "epochs": {"value": 1}})
    silent = _Silent()
    try:
        offline = run_tune("search", space, "--name", "off", "--storage-path", tmp_path, "--wandb", *TINY,
                           cwd=tmp_path, env={"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": silent.url,
                                              "HOME": str(tmp_path)})
    finally:
        silent.close()
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert f"note: wandb: {silent.url} does not answer" in offline.stderr
    runs = f"{tmp_path / 'off'}/trial_*/wandb/offline-run-*"
    assert len(list((tmp_path / "off").glob("trial_*/wandb/offline-run-*"))) == 2
    assert f"wandb: offline, 2 runs in {runs}; upload them with `wandb sync {runs}`" in offline.stdout

    disabled = run_tune("search", space, "--name", "none", "--storage-path", tmp_path, "--wandb", *TINY,
                        cwd=tmp_path, env={"WANDB_MODE": "disabled", "HOME": str(tmp_path)})
    assert disabled.returncode == 0, disabled.stdout + disabled.stderr
    assert not list((tmp_path / "none").glob("trial_*/wandb"))
    assert "wandb: disabled (WANDB_MODE=disabled): nothing was logged" in disabled.stdout


@pytest.fixture
def read_only_home(tmp_path):
    """A read-only filesystem (root ignores a chmod): needs mount rights."""
    yield from mounted_tmpfs(tmp_path / "home", "size=1m,ro")


@pytest.mark.slow
def test_a_sweep_works_with_a_read_only_home(tmp_path, read_only_home):
    """Ray saving its token in ~/.ray was a 56-line traceback."""
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.05]}, "epochs": {"value": 1}})
    env = {k: v for k, v in os.environ.items() if k != "TUNE_PIPELINE_CACHE"}  # ~/.cache: read-only too
    env["HOME"] = str(read_only_home)
    result = subprocess.run([sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "ro",
                             "--storage-path", str(tmp_path), *TINY], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trials: 1 finished" in result.stdout and not list(read_only_home.iterdir())


@pytest.fixture
def moto_server(tmp_path):
    """A moto S3 server of this test's own (the test kills it), with a bucket."""
    pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    create_bucket(client, "sweeps", server)
    yield server, client, env
    server.kill()
    server.wait()


@pytest.mark.slow
def test_a_bucket_lost_mid_sweep_is_one_line(tmp_path, moto_server):
    """The endpoint killed mid-sweep: every trial failed in turn, then a
    60-line traceback."""
    server, client, env = moto_server
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.05, 0.1, 0.2]}, "epochs": {"value": 40}},
                        tune={"max_concurrent_trials": 1})
    driver = subprocess.Popen(
        [sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "lost", "--storage-path",
         "s3://sweeps/x", *TINY], cwd=tmp_path, env={**os.environ, **env}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def uploaded() -> bool:
        listed = client.list_objects_v2(Bucket="sweeps", Prefix="x/lost/").get("Contents", [])
        return any(o["Key"].endswith("result.json") and o["Size"] > 0 for o in listed)

    wait_until(uploaded, 300, "a result in the bucket", process=driver)
    server.kill()
    server.wait()
    output, errors = driver.communicate(timeout=300)
    assert driver.returncode == 1, output + errors
    line, = errors.strip().splitlines()
    assert line.startswith("error: the sweep stopped: its storage does not answer")
    assert "continue with `tune resume s3://sweeps/x/lost`" in line
    assert output.count("failed ") <= 1  # the first failure stopped it; the others were not failed too
