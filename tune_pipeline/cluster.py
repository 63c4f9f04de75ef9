"""The local Ray head that `tune dashboard` starts, and only that one.

`tune dashboard` records the head it started (its Ray session folder and
process ids, in HEAD_FILE under the cache folder); `--stop` stops those
processes and no others: a Ray that someone else started (another sweep's
`ray.init`, a `ray start` by hand) keeps running, and is pointed at `ray stop`.

The dashboard runs arbitrary jobs for whoever can reach it, so it binds to
loopback unless the user asks for more, and then is warned.  When this Ray
asks for a token (token authentication, on by default once ~/.ray/auth_token
exists), the dashboard's API answers 401 without it: we say how to get it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tune_pipeline.errors import UserError
from tune_pipeline.storage import cache_dir

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEAD_FILE = "dashboard_head.json"
TOKEN_COMMAND = "ray get-auth-token"
STOP_SECONDS = 15.0


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def head_file() -> Path:
    return cache_dir() / HEAD_FILE


# --- processes, read from /proc (Linux): no psutil needed -------------------

def _start_time(pid: int) -> int | None:
    """The kernel's start time of a process: with the pid, it names the process
    even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def session_processes(session: str) -> list[dict]:
    """The processes whose command line names this Ray session folder."""
    found = []
    for pid in _pids():
        line = _cmdline(pid)
        if session in line and pid != os.getpid():
            scripts = [Path(a).name for a in line.split()[:3] if a.endswith(".py")]
            name = scripts[0] if scripts else Path(line.split(" ", 1)[0]).name
            found.append({"pid": pid, "start": _start_time(pid), "name": name})
    return found


def _alive(proc: dict) -> bool:
    return proc.get("start") is not None and _start_time(proc["pid"]) == proc["start"]


def dashboard_session(port: int) -> str | None:
    """The session folder of the Ray dashboard serving `port` on this machine.
    (Ray's `session_latest` link may name another Ray started a moment later.)"""
    for pid in _pids():
        args = _cmdline(pid).split()
        if any(a.endswith("dashboard/dashboard.py") for a in args[:3]) and f"--port={port}" in args:
            for arg in args:
                if arg.startswith("--session-dir="):
                    return arg.split("=", 1)[1]
    return None


def running_sessions() -> list[str]:
    """Ray session folders with a live GCS server on this machine (any owner)."""
    sessions = set()
    for pid in _pids():
        line = _cmdline(pid)
        if "gcs_server" in line.split(" ", 1)[0]:
            for part in line.split():
                if "session_" in part:
                    folder = part.split("=", 1)[-1]
                    while folder and not Path(folder).name.startswith("session_"):
                        folder = str(Path(folder).parent)
                    if folder.startswith("/"):
                        sessions.add(folder)
    return sorted(sessions)


@dataclass
class Head:
    """The head `tune dashboard` started: what `--stop` may stop."""
    session: str
    url: str
    processes: list[dict]

    def save(self) -> None:
        path = head_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"session": self.session, "url": self.url, "processes": self.processes},
                                   indent=2) + "\n")

    @classmethod
    def load(cls) -> "Head | None":
        try:
            data = json.loads(head_file().read_text())
            return cls(data["session"], data["url"], data["processes"])
        except (OSError, ValueError, KeyError):
            return None

    def alive(self) -> bool:
        return any(_alive(p) for p in self.processes)


# --- starting, finding, stopping ----------------------------------------------

def running_dashboard_url() -> str | None:
    """The dashboard URL of a Ray head already running on this machine, if any."""
    import ray

    if not running_sessions():
        return None  # ray.init(address="auto") would wait for a cluster that is not there
    try:
        context = ray.init(address="auto", log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError):
        return None
    url = getattr(context, "dashboard_url", None)
    ray.shutdown()
    return f"http://{url}" if url and "://" not in url else url or None


def _ray_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args],
                          capture_output=True, text=True)


def start_dashboard(host: str, port: int, allow_remote: bool, warn) -> tuple[str, bool]:
    if not is_loopback(host):
        if not allow_remote:
            raise UserError(f"--host {host} exposes the Ray dashboard, which lets anyone who reaches it "
                            f"run code on this machine; add --allow-remote if that is what you want")
        warn(f"warning: the Ray dashboard on {host}:{port} lets anyone who can reach it run code here")
    url = running_dashboard_url()
    if url:
        return url, False
    done = _ray_cli("start", "--head", "--include-dashboard=true", f"--dashboard-host={host}",
                    f"--dashboard-port={port}", "--disable-usage-stats")
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise UserError(f"ray start failed: {lines[-1] if lines else 'no output'}")
    session = dashboard_session(port)
    if session is None:  # not seen: record nothing rather than another head
        raise UserError(f"ray start said it started, but no dashboard listens on port {port}; "
                        f"see `ray status`")
    url = running_dashboard_url() or f"http://{host}:{port}"
    Head(session, url, session_processes(session)).save()
    return url, True


def needs_token(url: str) -> bool:
    """Whether the dashboard's API refuses requests without Ray's auth token."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/version", timeout=10):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403)
    except (urllib.error.URLError, OSError):
        return False


def auth_token() -> str | None:
    done = _ray_cli("get-auth-token")
    return done.stdout.strip() or None if done.returncode == 0 else None


def local_head_address() -> tuple[str | None, bool]:
    """(address, answers) of the Ray head that `ray start` or `tune dashboard`
    recorded on this machine, which a bare `ray.init()` would join.  A head
    that crashed leaves its address behind, and `ray.init()` then retries it
    for minutes: we check that something listens there first."""
    from ray._common.utils import get_ray_address_file  # no public API; Ray is pinned in pyproject

    try:
        address = Path(get_ray_address_file(None)).read_text().strip()
    except OSError:
        return None, False
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return address, True
    except (OSError, ValueError):
        return address, False


def _forget_stopped_head() -> None:
    """`ray start` recorded the head's address for `ray.init()` to join; the
    head is gone now, so the record goes too (as `ray stop` does)."""
    from ray._common.utils import get_ray_address_file

    address, answers = local_head_address()
    if address is not None and not answers:
        Path(get_ray_address_file(None)).unlink(missing_ok=True)


def stop_head() -> tuple[int, str]:
    """Stop the head `tune dashboard` started, and nothing else: (exit code, message)."""
    head = Head.load()
    if head is None or not head.alive():
        if head is not None:
            head_file().unlink(missing_ok=True)
        others = running_sessions()
        if others:
            return 2, (f"the Ray running here ({', '.join(Path(s).name for s in others)}) was not started by "
                       f"`tune dashboard`; stop it with `ray stop` if you mean to")
        return 0, "no Ray head started by `tune dashboard` is running; nothing to stop"
    # Workers started since are found by the session folder in their command line.
    targets = {p["pid"]: p for p in head.processes + session_processes(head.session) if _alive(p)}
    for proc in targets.values():
        try:
            os.kill(proc["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and any(_alive(p) for p in targets.values()):
        time.sleep(0.2)
    for proc in targets.values():
        if _alive(proc):
            try:
                os.kill(proc["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    head_file().unlink(missing_ok=True)
    _forget_stopped_head()
    names = ", ".join(f"{p['name']} ({p['pid']})" for p in sorted(targets.values(), key=lambda p: p["pid"]))
    return 0, f"stopped the Ray head `tune dashboard` started ({Path(head.session).name}): {names}"
