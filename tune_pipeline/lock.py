"""One driver per experiment: the lock file in the experiment folder.

`tune search` and `tune resume` take it before Ray touches the folder; a
second driver on the same experiment is refused with one line naming the
holder (two drivers train the same trials twice and delete each other's
checkpoints).  The file is created with O_EXCL, so of two drivers started
together exactly one wins.  It holds the holder's host, PID and start time,
and its modification time is a heartbeat refreshed while the driver runs.

A lock is stale, and taken over, when its holder is on this host and its
process is gone, or when its heartbeat is older than STALE_AFTER_S (a holder
on another node of a shared filesystem, or one killed with its machine).

On object storage (s3://...) there is no exclusive create: the lock is
written, then read back after a moment, and the driver whose lock is there
holds it.  Two drivers started in the same second on one bucket can both
pass; one started while another runs is refused as on a local folder.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

from tune_pipeline.errors import UserError
from tune_pipeline.storage import RemotePath

LOCK_FILE = "driver.lock"
HEARTBEAT_S = 20.0
STALE_AFTER_S = 120.0  # six missed heartbeats: the holder is gone, not slow
REMOTE_SETTLE_S = 1.0  # object storage: time for a competing write to show


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "a driver whose lock file is still being written"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"since {holder.get('started', '?')}")


class ExperimentLock:
    """`with ExperimentLock(folder):` holds the experiment for this process."""

    def __init__(self, experiment_dir, command: str = "tune"):
        self.remote = isinstance(experiment_dir, RemotePath)
        self.path = experiment_dir / LOCK_FILE if self.remote else Path(experiment_dir) / LOCK_FILE
        self.command = command
        self.me = {"host": socket.gethostname(), "pid": os.getpid(),
                   "started": datetime.now().isoformat(timespec="seconds"), "command": command,
                   "token": f"{os.getpid()}-{time.time_ns()}"}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ------------------------------------------------------------ reading

    def holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return 0.0

    def is_stale(self, holder: dict | None) -> bool:
        age = self._age()
        if holder is None:  # a crash between create and write leaves it empty
            return age > STALE_AFTER_S
        if holder.get("host") == self.me["host"] and isinstance(holder.get("pid"), int):
            if not _pid_alive(holder["pid"]):
                return True
        return age > STALE_AFTER_S

    # ------------------------------------------------------------ taking

    def _refused(self, holder: dict | None) -> UserError:
        return UserError(f"{self.path.parent}: another driver is running this experiment "
                         f"({describe_holder(holder)}); wait for it to end or stop it first")

    def _acquire_remote(self) -> "ExperimentLock":
        holder = self.holder()
        if holder is not None and holder != self.me and not self.is_stale(holder):
            raise self._refused(holder)
        try:
            self.path.write_text(json.dumps(self.me))
            time.sleep(REMOTE_SETTLE_S)  # a driver that wrote just after us wins; we see it here
        except OSError as exc:
            raise UserError(f"{self.path.parent}: cannot write {LOCK_FILE} "
                            f"({str(exc).splitlines()[0]})") from None
        holder = self.holder()
        if holder != self.me:
            raise self._refused(holder)
        self._start_heartbeat()
        return self

    def acquire(self) -> "ExperimentLock":
        if self.remote:
            return self._acquire_remote()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if not self.is_stale(holder):
                    raise self._refused(holder) from None
                self._take_over(holder)
                continue
            except OSError as exc:
                raise UserError(f"{self.path.parent}: cannot create {LOCK_FILE} "
                                f"({exc.strerror or exc})") from None
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
                f.flush()
                os.fsync(f.fileno())
            self._start_heartbeat()
            return self
        raise UserError(f"{self.path.parent}: the driver lock keeps changing hands; "
                        f"another driver is starting on this experiment")

    def _take_over(self, stale: dict | None) -> None:
        """Move the stale lock aside, checking it is still the one judged stale:
        of two drivers taking over at once, the slower must not remove the
        faster one's fresh lock."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{self.me['token']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else moved it: race for the create again
        if self.holder_of(aside) != stale:
            try:
                os.link(aside, self.path)  # put the fresh lock back (fails if one appeared)
            except OSError:
                pass
        try:
            aside.unlink()
        except OSError:
            pass

    @staticmethod
    def holder_of(path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _start_heartbeat(self) -> None:
        def beat():
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    if self.remote:  # an object's mtime changes only when it is written
                        self.path.write_text(json.dumps(self.me))
                    else:
                        os.utime(self.path)
                except OSError:
                    pass  # storage hiccup: the next beat tries again
        self._beat = threading.Thread(target=beat, name="tune-driver-lock", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:  # a beat mid-write must not recreate the lock after the unlink
            self._beat.join(timeout=60)
        if self.holder() == self.me:  # never remove a lock that a takeover gave to another
            try:
                self.path.unlink()
            except OSError:
                pass

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
