"""Which Ray head a sweep joins, and the local head `tune dashboard` starts:
one user's Ray, and only theirs.

`tune dashboard` starts its head itself (a launcher process in a session of
its own, `HEAD_LAUNCHER`) and records exactly what it started: the Ray
session folder the launcher reports and the processes that name it, in
HEAD_FILE under the cache folder.  Nothing is found by scanning for a port
(every Ray on a machine, each sweep's private one too, runs a dashboard
process with `--port=8265` in its arguments).  `--stop` stops those processes
and no others; with none of them running it says so and exits 0.

Every port of that head (GCS, raylet, object manager, agents, dashboard)
binds loopback unless `--allow-remote`: Ray binds its servers to the node's
address, and `ray start` turns 127.0.0.1 into the machine's outward address,
so the launcher starts the node itself.  No Ray Client server runs (a sweep
refuses ray:// anyway).  The head uses Ray's token authentication, as every
new local Ray does, with this user's token (~/.ray/auth_token).

A sweep without `--address` (or with `--address auto`) joins the head of
this user that `tune dashboard` recorded, else the one `ray start` recorded
in this user's own Ray temp folder (RAY_TMPDIR), if a GCS server of this user
serves it; never another user's session, and never Ray's own lookup, which
adopts any GCS server on the machine.  Joining passes this user's token when
there is one (Ray asks for it only on heads it found by itself), and Ray's
own lines while joining stay off the terminal: a failed join is one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tune_pipeline import internals
from tune_pipeline.errors import UserError
from tune_pipeline.storage import cache_dir

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEAD_FILE = "dashboard_head.json"
TOKEN_COMMAND = "ray get-auth-token"
STOP_SECONDS = 15.0
START_SECONDS = 120.0  # a head on a busy 2-core machine came up in 5-15 s
HEAD_LAUNCHER = "from tune_pipeline.cluster import _launch_head; _launch_head()"
# Ray turns a loopback address into the machine's outward one wherever it
# meets one (ray start, ray.init, each worker), unless it treats the machine
# as a lone node, as it does on macOS and Windows: this variable (read when
# Ray is imported) says so.  The loopback head runs with it, hence its workers.
LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def head_file() -> Path:
    return cache_dir() / HEAD_FILE


# --- processes, read from /proc (Linux): no psutil needed -------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> int | None:
    """The kernel's start time of a process: with the pid, it names the process
    even after the pid is reused."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _owner(pid: int) -> int | None:
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _name(line: str) -> str:
    scripts = [Path(a).name for a in line.split()[:3] if a.endswith(".py")]
    return scripts[0] if scripts else Path(line.split(" ", 1)[0]).name


def session_processes(session: str) -> list[dict]:
    """This user's processes whose command line names this Ray session folder
    (a session folder's name holds its start time and pid: no two Rays share one)."""
    found = []
    for pid in _pids():
        line = _cmdline(pid)
        if session in line and pid != os.getpid() and _owner(pid) == os.getuid():
            found.append({"pid": pid, "start": _start_time(pid), "name": _name(line)})
    return found


def _alive(proc: dict) -> bool:
    return proc.get("start") is not None and _start_time(proc["pid"]) == proc["start"]


def ray_temp_dir() -> Path:
    """This user's Ray temp folder: RAY_TMPDIR's `ray`, as Ray itself reads it."""
    return internals.ray_temp_dir()


@dataclass
class Head:
    """The head `tune dashboard` started: what `--stop` may stop and sweeps join."""
    session: str                 # its Ray session folder
    address: str                 # the GCS address a sweep joins
    url: str                     # the dashboard
    processes: list[dict] = field(default_factory=list)  # pid, start, name

    def save(self) -> None:
        path = head_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls) -> "Head | None":
        try:
            data = json.loads(head_file().read_text())
            return cls(data["session"], data["address"], data["url"], data["processes"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def alive(self) -> bool:
        return any(_alive(p) for p in self.processes)


# --- the head `tune dashboard` starts ------------------------------------------

def _launch_head() -> None:
    """Run by the launcher process (HEAD_LAUNCHER), in a session of its own:
    start a Ray head as `ray start --head` does, but on the address asked for
    (loopback by default), report it as one JSON line and exit; the head's
    processes keep running."""
    settings = json.loads(sys.argv[1])
    head = internals.start_ray_head(settings["node_ip"], settings["host"], settings["port"])
    print(json.dumps(head), flush=True)


def _node_ip(host: str) -> str:
    if is_loopback(host):
        return "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        from ray.util import get_node_ip_address

        return get_node_ip_address()
    return host


def _port_free(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
        return True
    except OSError:
        return False


def start_dashboard(host: str, port: int, allow_remote: bool, warn) -> tuple[str, bool]:
    """(dashboard URL, whether it was started now): the head this user's
    `tune dashboard` started if it still runs, else a new one."""
    if not is_loopback(host):
        if not allow_remote:
            raise UserError(f"--host {host} exposes the Ray head (its dashboard and every other port), which "
                            f"lets anyone who reaches it run code on this machine; add --allow-remote if "
                            f"that is what you want")
        warn(f"warning: the Ray head on {host} (dashboard port {port}) lets anyone who can reach it run "
             f"code here")
    head = Head.load()
    if head is not None and head.alive():
        return head.url, False
    if not _port_free(host, port):
        raise UserError(f"--port {port}: something else listens on {host}:{port} (another Ray's "
                        f"dashboard?); choose another --port")
    settings = {"node_ip": _node_ip(host), "host": host, "port": port}
    env = dict(os.environ, **(LOCAL_ONLY if is_loopback(settings["node_ip"]) else {}))
    with tempfile.TemporaryFile("w+") as log:
        try:
            done = subprocess.run([sys.executable, "-c", HEAD_LAUNCHER, json.dumps(settings)], env=env,
                                  stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                                  start_new_session=True, timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            raise UserError(f"the Ray head did not start within {START_SECONDS:g} s") from None
        log.seek(0)
        said = [ln for ln in log.read().splitlines() if ln.strip()]
    reported = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not reported:
        raise UserError(f"the Ray head did not start: {said[-1] if said else f'exit {done.returncode}'}")
    started = json.loads(reported[-1])
    url = started.get("url") or f"{host}:{port}"
    url = url if "://" in url else f"http://{url}"
    head = Head(started["session"], started["address"], url, session_processes(started["session"]))
    head.save()
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
    """This user's Ray token, as Ray finds it (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)."""
    return internals.ray_auth_token()


def stop_head() -> tuple[int, str]:
    """Stop the head `tune dashboard` started, and nothing else: (exit code, message)."""
    head = Head.load()
    if head is None or not head.alive():
        head_file().unlink(missing_ok=True)
        return 0, "no Ray head started by `tune dashboard` is running; nothing to stop"
    # Workers started since are found by the session folder in their command line.
    targets = {p["pid"]: p for p in head.processes + session_processes(head.session) if _alive(p)}
    for proc in targets.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc["pid"], signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and any(_alive(p) for p in targets.values()):
        time.sleep(0.2)
    for proc in targets.values():
        if _alive(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc["pid"], signal.SIGKILL)
    head_file().unlink(missing_ok=True)
    _forget_address(head.address)
    names = ", ".join(f"{p['name']} ({p['pid']})" for p in sorted(targets.values(), key=lambda p: p["pid"]))
    return 0, f"stopped the Ray head `tune dashboard` started ({Path(head.session).name}): {names}"


# --- the head a sweep joins ------------------------------------------------------

def _address_file() -> Path:
    return internals.ray_address_file()


def _forget_address(address: str) -> None:
    """The address `ray start` (or our launcher) left for `ray.init()` to join,
    removed when it names the head just stopped, as `ray stop` does."""
    path = _address_file()
    with contextlib.suppress(OSError):
        if path.read_text().strip() == address:
            path.unlink()


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def _own_gcs_in(temp_dir: Path) -> bool:
    """Whether a GCS server of this user runs a session inside `temp_dir`."""
    prefix = f"--session-dir={temp_dir}/session_"
    return any(_owner(pid) == os.getuid() and "gcs_server" in _cmdline(pid).split(" ", 1)[0]
               and prefix in _cmdline(pid) for pid in _pids())


def own_head() -> tuple[str | None, str | None]:
    """(address, description) of this user's head on this machine, or
    (None, why none was joined, or None when there is nothing to say)."""
    head = Head.load()
    if head is not None and head.alive() and _answers(head.address):
        return head.address, f"the Ray head `tune dashboard` started ({head.address})"
    path = _address_file()
    try:
        address = path.read_text().strip()
        owner = path.stat().st_uid
    except OSError:
        return None, None
    if owner != os.getuid():
        return None, None  # another user's record (a shared /tmp/ray): not ours to join
    if not _answers(address):
        return None, (f"no Ray head answers at {address} (recorded by an earlier `ray start`); "
                      f"starting a private local Ray instead")
    if not _own_gcs_in(path.parent):
        return None, None  # something of someone else's listens there now
    return address, f"the Ray head at {address}"


def prepare_join(address: str | None) -> None:
    """Before joining a head by its address.  A loopback address stays
    loopback (LOCAL_ONLY; else Ray dials the machine's outward address, where
    a loopback head does not listen).  And Ray sends a token only to a head
    it found by itself, so a head of this user that asks for one would refuse
    us: when this user has a token and has not chosen a mode, it is sent."""
    host = (address or "").rpartition(":")[0].strip("[]")
    if is_loopback(host):
        os.environ.update(LOCAL_ONLY)
        internals.keep_ray_on_loopback()  # Ray's import read the variable before
    if "RAY_AUTH_MODE" in os.environ or auth_token() is None:
        return
    internals.send_ray_token()  # RAY_AUTH_MODE=token, for this process and its children


@contextlib.contextmanager
def native_output_captured():
    """Ray's C++ core writes its retries and refusals straight to file
    descriptor 2; while joining they go to a file instead, whose lines are
    returned (the yielded list fills when the block ends)."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(ln for ln in sink.read().decode(errors="replace").splitlines() if ln.strip())


TOKEN_REFUSED = ("the head asks for a Ray auth token that this user does not have (a head another user "
                 "started, or one started with another token: set RAY_AUTH_TOKEN to that head's "
                 f"`{TOKEN_COMMAND}`)")


def join_problem(exc: BaseException, native: list[str]) -> str:
    """One line saying why a join failed, from the exception and Ray's own lines."""
    text = " ".join([str(exc), str(exc.__cause__ or ""), *native])
    if "uthenticat" in text or "InvalidAuthToken" in text or "UNAUTHENTICATED" in text:
        return TOKEN_REFUSED
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
