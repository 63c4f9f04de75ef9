"""torch's OpenMP threads sleep while they wait when other processes share
the CPU, and keep libgomp's default (spin, then sleep) on a quiet machine
(cpu_share.py); a user's own setting wins.  The speeds are in BENCHMARKS.md,
"A loop that shares the CPU"."""

import os
import subprocess
import sys

import pytest
import yaml

from tune_pipeline.cpu_share import BUSY_NEIGHBOUR, others_busy_cores, share_the_cpu

from conftest import ROOT


def libgomp_settings(tmp_path, **env) -> str:
    """What libgomp says it runs with in `tune train`, as a user starts it."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": "small_cnn", "dataset": "digits", "epochs": 1, "batch_size": 32,
                                      "max_train_images": 64, "max_test_images": 32}))
    done = subprocess.run([sys.executable, "-m", "tune_pipeline", "train", str(config), "-o", str(tmp_path / "out"),
                           "-q"], capture_output=True, text=True, cwd=ROOT,
                          env={**environ, "OMP_DISPLAY_ENV": "VERBOSE", **env}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stderr


@pytest.fixture
def busy_neighbour():
    """Another process that keeps a core busy, as on a shared machine."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def test_tune_train_beside_a_busy_process_runs_torch_with_threads_that_sleep_while_they_wait(tmp_path,
                                                                                              busy_neighbour):
    shown = libgomp_settings(tmp_path)
    if "OMP_WAIT_POLICY" not in shown:
        pytest.skip("this torch does not use GNU OpenMP")
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in shown and "GOMP_SPINCOUNT = '0'" in shown


def test_a_busy_process_beside_is_seen(busy_neighbour):
    assert others_busy_cores(0.5) >= 0.5


@pytest.mark.parametrize("env, shown", [({"OMP_WAIT_POLICY": "active"}, "OMP_WAIT_POLICY = 'ACTIVE'"),
                                        ({"GOMP_SPINCOUNT": "1000"}, "GOMP_SPINCOUNT = '1000'")])
def test_the_users_own_setting_wins(tmp_path, busy_neighbour, env, shown):
    settings = libgomp_settings(tmp_path, **env)
    if "OMP_WAIT_POLICY" not in settings:
        pytest.skip("this torch does not use GNU OpenMP")
    assert shown in settings


@pytest.mark.parametrize("others, policy", [(0.0, None), (BUSY_NEIGHBOUR / 2, None), (BUSY_NEIGHBOUR, "PASSIVE"),
                                            (1.0, "PASSIVE"), (None, "PASSIVE")],
                         ids=["quiet", "a little", "shared", "one busy core", "unknown"])
def test_the_policy_follows_the_load_and_only_where_the_user_chose_none(others, policy):
    environ = {}
    assert share_the_cpu(environ, probe=lambda: others) == policy
    assert environ == ({"OMP_WAIT_POLICY": policy} if policy else {})
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10"}):
        environ = dict(mine)
        assert share_the_cpu(environ, probe=lambda: 1.0) is None
        assert environ == mine
