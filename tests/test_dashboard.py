"""`tune dashboard` starts one head, this user's own, on loopback; sweeps on
the machine run on it and show in its API; `--stop` stops that head only.
Another user's head and a sweep's private Ray on the same machine are never
adopted, recorded or stopped, and the suite never writes the user's HOME."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tune_pipeline import cluster
from tune_pipeline.experiment import load_experiment

from conftest import (REAL_HOME, free_port, TINY, TRANSFORM_SCRIPTS, home_snapshot, run_tune, start_tune, wait_until,
                      write_sweep)


def test_the_suite_runs_under_its_own_home():
    assert Path.home() != REAL_HOME and Path.home().name.startswith("tune-suite-home-")
    seen = subprocess.run([sys.executable, "-c", "from pathlib import Path; print(Path.home())"],
                          capture_output=True, text=True).stdout.strip()
    assert seen == str(Path.home())  # and so does every process a test starts


def test_stop_with_nothing_of_its_own_running_says_so():
    assert cluster.stop_head() == (0, "no Ray head started by `tune dashboard` is running; nothing to stop")
    # A record whose processes are gone (a reboot, a `ray stop`): nothing to stop, record dropped.
    cluster.Head("/tmp/ray/session_x", "127.0.0.1:1", "http://127.0.0.1:1",
                 [{"pid": os.getpid(), "start": -1, "name": "gcs_server"}]).save()
    assert cluster.stop_head()[0] == 0 and not cluster.head_file().exists()


def test_a_foreign_address_record_is_not_joined(private_ray_tmpdir, tmp_path):
    """`ray start` leaves the head's address in the Ray temp folder; a record
    there with no GCS server of this user behind it names someone else's Ray
    (or a dead one): a sweep starts its own rather than join it."""
    record = Path(private_ray_tmpdir) / "ray" / "ray_current_cluster"
    record.parent.mkdir(parents=True)
    with socket.socket() as listening:  # something answers there, but it is no GCS of ours
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        record.write_text(f"127.0.0.1:{listening.getsockname()[1]}")
        assert cluster.own_head() == (None, None)


def _listening_sockets(pids: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket listening in one of these processes (/proc/net/tcp*)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.append((address, int(port, 16)))
    return found


def _is_loopback(hex_address: str) -> bool:
    """127.0.0.0/8, ::1, or ::ffff:127.x as /proc/net/tcp* write them (little-endian words)."""
    if len(hex_address) == 8:
        return hex_address.endswith("7F")
    return (hex_address == "00000000000000000000000001000000"
            or (hex_address.startswith("0000000000000000FFFF0000") and hex_address.endswith("7F")))


def _start_foreign_head(folder: Path, port: int) -> tuple[str, Path]:
    """A head as another user starts one: `ray start` in its own Ray temp folder and
    HOME (its own token), with a dashboard.  Returns (GCS address, temp folder)."""
    home = folder / "home"
    home.mkdir(parents=True)
    temp = Path(tempfile.mkdtemp(prefix="rf", dir="/tmp"))  # short: Ray's socket paths
    env = dict(os.environ, HOME=str(home), RAY_TMPDIR=str(temp))
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    subprocess.run([*ray, "get-auth-token", "--generate"], env=env, capture_output=True, check=True)
    started = subprocess.run([*ray, "start", "--head", "--port=0", f"--dashboard-port={port}",
                              "--disable-usage-stats"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    return (temp / "ray" / "ray_current_cluster").read_text().strip(), temp


def _kill(processes: list[dict]) -> None:
    for proc in processes:
        try:
            os.kill(proc["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def _api(url: str, path: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"{url}{path}", headers=headers), timeout=30) as answer:
        return json.loads(answer.read())


@pytest.mark.slow
@pytest.mark.timeout(600)  # three Rays, four sweeps: 115 s in a loaded full run
def test_dashboard_starts_and_stops_only_its_own_head_among_other_rays(tmp_path, private_ray_tmpdir):
    real_home = home_snapshot(REAL_HOME)
    port = free_port()
    foreign_address, foreign_temp = _start_foreign_head(tmp_path / "other-user", free_port())
    # A sweep on its own private Ray, held mid-trial (its script waits for a file) while
    # `tune dashboard` starts and stops.
    release = tmp_path / "release"
    held = tmp_path / "held_transform.py"
    held.write_text(TRANSFORM_SCRIPTS[-1].read_text().replace(
        "def train_transform(images, ctx):",
        f"def train_transform(images, ctx):\n    import pathlib, time\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n        time.sleep(0.1)", 1))
    private = start_tune("search", write_sweep(tmp_path, {"runtime_transform_script": {"value": str(held)},
                                                          "epochs": {"value": 1}}, name="held.yaml"),
                         "--name", "private", "--storage-path", tmp_path, *TINY, cwd=tmp_path)
    record = None
    try:
        wait_until(lambda: list(tmp_path.glob("private/trial_*")), 300,  # its Ray is up, a trial running
                   "the held sweep's first trial", process=private)

        started = run_tune("dashboard", "--port", port, "--show-token", cwd=tmp_path)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"started Ray head; dashboard: http://127.0.0.1:{port}" in started.stdout
        assert "Token" not in started.stderr and "InvalidAuthToken" not in started.stdout + started.stderr
        record = json.loads(cluster.head_file().read_text())
        # Exactly the head it started: a session in this user's Ray temp folder, not the
        # foreign head's, not the private sweep's (both run dashboards of their own).
        assert record["session"].startswith(str(Path(private_ray_tmpdir) / "ray" / "session_"))
        assert {p["name"] for p in record["processes"]} >= {"gcs_server", "raylet", "dashboard.py"}
        assert all(record["session"] in cluster._cmdline(p["pid"]) for p in record["processes"])
        assert cluster.own_head()[0] == record["address"]

        # Every port of the head listens on loopback only.
        sockets = _listening_sockets({p["pid"] for p in cluster.session_processes(record["session"])})
        assert len(sockets) >= 3 and port in {p for _, p in sockets}  # GCS, raylet, dashboard at least
        assert [s for s in sockets if not _is_loopback(s[0])] == []

        again = run_tune("dashboard", "--port", port, cwd=tmp_path)
        assert again.returncode == 0 and "found Ray head" in again.stdout  # never a second head

        # A sweep runs on that head, token and all, with nothing exported by the user ...
        token = started.stdout.split("log in with the token: ", 1)[1].split()[0]
        space = write_sweep(tmp_path, {"learning_rate": {"value": 0.05}, "epochs": {"value": 1}})
        joined = run_tune("search", space, "--name", "on-dashboard", "--storage-path", tmp_path, *TINY,
                          cwd=tmp_path)
        assert joined.returncode == 0, joined.stdout + joined.stderr
        jobs = [j for j in _api(started.stdout.split("dashboard: ")[1].split()[0], "/api/jobs/", token)
                if "on-dashboard" in (j.get("entrypoint") or "")]
        assert len(jobs) == 1, "the sweep's driver is not among the dashboard's jobs"
        # ... by its explicit address too (Ray sends no token there unless told to) ...
        explicit = run_tune("search", space, "--name", "by-address", "--address", record["address"],
                            "--storage-path", tmp_path, *TINY, cwd=tmp_path)
        assert explicit.returncode == 0, explicit.stdout + explicit.stderr
        # ... and by `--address auto`, which finds this user's head and no other.
        auto = run_tune("search", space, "--name", "by-auto", "--address", "auto",
                        "--storage-path", tmp_path, *TINY, cwd=tmp_path)
        assert auto.returncode == 0, auto.stdout + auto.stderr
        assert load_experiment(tmp_path / "by-auto").status_counts() == {"TERMINATED": 1}
        # ... while the other user's head, behind a token this user lacks, is one line.
        refused = run_tune("search", space, "--name", "foreign", "--address", foreign_address,
                           "--storage-path", tmp_path, cwd=tmp_path, timeout=300)
        assert refused.returncode == 2 and "auth token" in refused.stderr, refused.stdout + refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and refused.stdout == "starting Ray…\n"

        stopped = run_tune("dashboard", "--stop", cwd=tmp_path)
        assert stopped.returncode == 0 and "stopped the Ray head `tune dashboard` started" in stopped.stdout
        assert "gcs_server" in stopped.stdout and "raylet" in stopped.stdout
        assert not cluster.Head.load() and cluster.session_processes(record["session"]) == []
        nothing = run_tune("dashboard", "--stop", cwd=tmp_path)  # the others still run: not ours
        assert nothing.returncode == 0 and "nothing to stop" in nothing.stdout

        # Both other Rays lived through it: the foreign head answers, the held sweep finishes.
        assert any(p["name"] == "gcs_server" for p in cluster.session_processes(str(foreign_temp)))
        release.write_text("")
        output, _ = private.communicate(timeout=300)
        assert private.returncode == 0, output
        assert "1 finished" in output

        after = home_snapshot(REAL_HOME)
        assert after == real_home, "the suite wrote into the user's real ~/.ray or ~/.cache"
        assert (Path.home() / ".ray" / "auth_token").is_file()  # Ray's writes went to the suite's HOME
    finally:
        release.write_text("")
        if private.poll() is None:
            private.kill()
        if record is not None:
            _kill(cluster.session_processes(record["session"]))
            cluster.head_file().unlink(missing_ok=True)
        _kill(cluster.session_processes(str(foreign_temp)))
        shutil.rmtree(foreign_temp, ignore_errors=True)
