"""The driver lock: a holder whose process lives
on this host keeps it whatever its heartbeat says; a lock is taken over only
when its process is gone (same host) or its heartbeat is stale (another
host); every refusal names driver.lock, its holder and how to clear it.
The lock files a driver can meet are data below, each with its outcome."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tune_pipeline.errors import UserError
from tune_pipeline.lock import LOCK_FILE, STALE_AFTER_S, ExperimentLock, _boot_id, _process_start

HOST = socket.gethostname()
DAY = 86400.0


def _dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def holder(host=HOST, pid=None, **extra) -> str:
    pid = os.getpid() if pid is None else pid
    return json.dumps({"host": host, "pid": pid, "started": "2026-01-01T00:00:00", "command": "tune search",
                       **extra})


# (case, the file's text, its heartbeat's age in seconds (negative: in the
# future), "taken" or the words the refusal must hold besides the file's path).
CASES = [
    ("this host, live process, heartbeat a day old", lambda: holder(), DAY,
     [f"pid {os.getpid()} on {HOST}", f"kill {os.getpid()}"]),
    ("this host, live process, recorded start matches", lambda: holder(pid_start=_process_start(os.getpid())),
     DAY, [f"pid {os.getpid()}"]),
    ("this host, process gone, fresh heartbeat", lambda: holder(pid=_dead_pid()), 0, "taken"),
    ("this host, PID reused by another process", lambda: holder(pid_start=-1), 0, "taken"),
    ("this host, written before a reboot", lambda: holder(boot="another-boot"), 0, "taken"),
    ("another host, fresh heartbeat", lambda: holder(host="node-b", pid=1), 5,
     ["pid 1 on node-b", "heartbeat 5 s ago", "stop it on node-b", f"once its heartbeat is {STALE_AFTER_S:g} s"]),
    ("another host, stale heartbeat", lambda: holder(host="node-b", pid=1), STALE_AFTER_S + 5, "taken"),
    ("another host, heartbeat a day in the future", lambda: holder(host="node-b", pid=1), -DAY,
     ["pid 1 on node-b", "in the future", "rm "]),
    ("garbage", lambda: "hello, I am not JSON", 5, ["not a lock this tool wrote", "hello, I am not JSON", "rm "]),
    ("JSON without a holder", lambda: json.dumps([1, 2, 3]), 5, ["not a lock this tool wrote", "rm "]),
    ("garbage nobody refreshes", lambda: "hello", STALE_AFTER_S + 5, "taken"),
    ("empty, just created", lambda: "", 0, ["creating this lock right now"]),
    ("empty, left by a crash", lambda: "", 30, ["not a lock this tool wrote (empty", "rm "]),
]


@pytest.mark.parametrize("case, text, age, outcome", CASES, ids=[c[0] for c in CASES])
def test_what_a_driver_does_with_the_lock_it_finds(tmp_path, case, text, age, outcome):
    path = tmp_path / LOCK_FILE
    path.write_text(text())
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    if outcome == "taken":
        with ExperimentLock(tmp_path, "tune resume") as lock:
            assert json.loads(path.read_text())["token"] == lock.me["token"]
        assert not path.exists()
        return
    with pytest.raises(UserError) as refused:
        ExperimentLock(tmp_path, "tune resume").acquire()
    message = refused.value.one_line()
    assert str(path) in message and "\n" not in message
    for words in outcome:
        assert words in message, message
    assert path.read_text() == text() or case.startswith("this host, process gone")  # left as it was


def test_a_suspended_driver_keeps_its_lock(tmp_path):
    """Ctrl-Z for longer than a stale heartbeat: the lock holds while the process lives."""
    holder_process = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tune_pipeline.lock import ExperimentLock; "
                               "ExperimentLock(sys.argv[1], 'tune search').acquire(); print('held', flush=True); "
                               "time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder_process.stdout.readline().strip() == "held"
        os.kill(holder_process.pid, signal.SIGSTOP)
        old = time.time() - 10 * STALE_AFTER_S  # no heartbeat for 20 minutes
        os.utime(tmp_path / LOCK_FILE, (old, old))
        with pytest.raises(UserError, match=rf"pid {holder_process.pid} on {HOST}"):
            ExperimentLock(tmp_path, "tune resume").acquire()
    finally:
        os.kill(holder_process.pid, signal.SIGKILL)
        holder_process.wait()
    with ExperimentLock(tmp_path, "tune resume"):  # gone now: taken over at once
        pass


def test_the_lock_records_what_tells_its_process_apart():
    me = ExperimentLock("/nonexistent", "tune search").me
    assert me["pid"] == os.getpid() and me["host"] == HOST
    assert me["pid_start"] == _process_start(os.getpid()) and me["boot"] == _boot_id()
