"""On a CPU that other processes share, torch's OpenMP threads sleep while
they wait rather than spin (cpu_share.py); a user's own setting wins.  The
speeds are in BENCHMARKS.md, "A loop that shares the CPU"."""

import os
import subprocess
import sys

import pytest

from tune_pipeline.cpu_share import share_the_cpu

from conftest import ROOT


def libgomp_settings(**env) -> str:
    """What libgomp says it runs with, in `tune` as a user starts it."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-m", "tune_pipeline", "models"], capture_output=True, text=True,
                          cwd=ROOT, env={**environ, "OMP_DISPLAY_ENV": "VERBOSE", **env}, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_tune_runs_torch_with_threads_that_sleep_while_they_wait():
    shown = libgomp_settings()
    if "OMP_WAIT_POLICY" not in shown:
        pytest.skip("this torch does not use GNU OpenMP")
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in shown and "GOMP_SPINCOUNT = '0'" in shown


@pytest.mark.parametrize("env, shown", [({"OMP_WAIT_POLICY": "active"}, "OMP_WAIT_POLICY = 'ACTIVE'"),
                                        ({"GOMP_SPINCOUNT": "1000"}, "GOMP_SPINCOUNT = '1000'")])
def test_the_users_own_setting_wins(env, shown):
    settings = libgomp_settings(**env)
    if "OMP_WAIT_POLICY" not in settings:
        pytest.skip("this torch does not use GNU OpenMP")
    assert shown in settings


def test_the_setting_is_made_only_where_the_user_made_none():
    environ = {}
    share_the_cpu(environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10"}):
        environ = dict(mine)
        share_the_cpu(environ)
        assert environ == mine
