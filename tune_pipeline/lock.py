"""One driver per experiment: the lock file `driver.lock` in the experiment folder.

`tune search` and `tune resume` take it before Ray touches the folder; a
second driver on the same experiment is refused with one line naming the
holder (two drivers train the same trials twice and delete each other's
checkpoints).  The file is created with O_EXCL, so of two drivers started
together exactly one wins.  It holds the holder's host, PID, the PID's start
time and the host's boot, and its modification time is a heartbeat
refreshed every HEARTBEAT_S while the driver runs.

Who keeps it (the guarantee docs/resume-and-faults.md states):
- a holder on this host keeps it while its process lives (the same PID,
  started at the same time, in this boot), whatever its heartbeat says: a
  driver suspended with Ctrl-Z for an hour still holds its experiment; once
  the process is gone the lock is taken over at once;
- a holder on another host keeps it while its heartbeat is younger than
  STALE_AFTER_S; a heartbeat dated in the future (clocks that disagree) is
  not judged: the lock is refused with a line saying so;
- a file that is not a lock this tool wrote is refused with a line saying
  what it holds, until it is as old as a stale heartbeat.
Every refusal names the file, its holder and how to clear it.

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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tune_pipeline.errors import UserError
from tune_pipeline.storage import RemotePath

LOCK_FILE = "driver.lock"
HEARTBEAT_S = 20.0
STALE_AFTER_S = 120.0  # six missed heartbeats: the holder is gone, not slow
CLOCK_SLACK_S = 60.0   # a heartbeat this far ahead of our clock is "in the future"
CREATING_S = 5.0       # an empty lock younger than this is being written right now
REMOTE_SETTLE_S = 1.0  # object storage: time for a competing write to show


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except (OverflowError, ValueError):
        return False
    return True


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a
    live holder from a new process that reuses its PID; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "an unknown driver"
    command = f" ({holder['command']})" if holder.get("command") else ""
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"since {holder.get('started', '?')}{command}")


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


@dataclass
class Verdict:
    """What a lock file found on disk means: `live` (refuse), `stale` (take
    over), `free` (none); `message` says why, for a refusal."""
    state: str
    holder: dict | None = None
    message: str = ""
    text: str | None = None  # the file as judged (a takeover checks it is still that one)


class ExperimentLock:
    """`with ExperimentLock(folder):` holds the experiment for this process."""

    def __init__(self, experiment_dir, command: str = "tune"):
        self.remote = isinstance(experiment_dir, RemotePath)
        self.path = experiment_dir / LOCK_FILE if self.remote else Path(experiment_dir) / LOCK_FILE
        self.command = command
        self.me = {"host": socket.gethostname(), "pid": os.getpid(),
                   "pid_start": _process_start(os.getpid()), "boot": _boot_id(),
                   "started": datetime.now().isoformat(timespec="seconds"), "command": command,
                   "token": f"{os.getpid()}-{time.time_ns()}"}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # ------------------------------------------------------------ reading

    def _read(self) -> tuple[bool, str | None]:
        """(whether the file exists, its text)."""
        try:
            return True, self.path.read_text(errors="replace")
        except FileNotFoundError:
            return False, None
        except OSError:
            return self.path.exists(), None

    @staticmethod
    def _parse(text: str | None) -> dict | None:
        try:
            data = json.loads(text) if text else None
        except (ValueError, RecursionError):
            return None
        ok = isinstance(data, dict) and isinstance(data.get("host"), str) and isinstance(data.get("pid"), int)
        return data if ok else None

    def holder(self) -> dict | None:
        return self._parse(self._read()[1])

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return 0.0

    def _local_holder_alive(self, holder: dict) -> bool:
        if holder.get("boot") and self.me["boot"] and holder["boot"] != self.me["boot"]:
            return False  # the machine rebooted since: no process of then survives
        if not _pid_alive(holder["pid"]):
            return False
        recorded = holder.get("pid_start")
        return recorded is None or recorded == _process_start(holder["pid"])

    def _remove_command(self) -> str:
        if not self.remote:
            return f"rm {self.path}"
        return f"aws s3 rm {self.path}" if str(self.path).startswith("s3://") else f"delete {self.path}"

    def verdict(self) -> Verdict:
        exists, text = self._read()
        if not exists:
            return Verdict("free")
        verdict = self._judge(text)
        verdict.text = text
        return verdict

    def _judge(self, text: str | None) -> Verdict:
        holder, age, where = self._parse(text), self._age(), self.path
        if holder is None:
            if not text and age < CREATING_S:
                return Verdict("live", None, f"{where}: a driver is creating this lock right now; "
                                             f"try again in a moment")
            if age > STALE_AFTER_S:
                return Verdict("stale")
            shown = (text or "")[:40].replace("\n", " ")
            what = "empty" if not text else f"unreadable: {shown!r}{'...' if len(text or '') > 40 else ''}"
            return Verdict("live", None, f"{where}: not a lock this tool wrote ({what}, changed "
                                         f"{_ago(age)} ago); if no driver runs this experiment, "
                                         f"remove it: {self._remove_command()}")
        who = describe_holder(holder)
        if holder.get("host") == self.me["host"]:
            if not self._local_holder_alive(holder):
                return Verdict("stale", holder)
            return Verdict("live", holder, f"{where}: another driver runs this experiment: {who}; wait for "
                                           f"it to end, or stop it (kill {holder['pid']}) and try again")
        if age < -CLOCK_SLACK_S:
            return Verdict("live", holder, f"{where}: held by {who}, but its heartbeat is dated "
                                           f"{_ago(age)} in the future (that host's clock, or the "
                                           f"file's time, is wrong); if no driver runs on "
                                           f"{holder['host']}, remove it: {self._remove_command()}")
        if age > STALE_AFTER_S:
            return Verdict("stale", holder)
        return Verdict("live", holder, f"{where}: another driver runs this experiment: {who}, heartbeat "
                                       f"{_ago(age)} ago; wait for it to end or stop it on "
                                       f"{holder['host']} (its lock is taken over once its heartbeat is "
                                       f"{STALE_AFTER_S:g} s old)")

    # ------------------------------------------------------------ taking

    def _refused(self) -> UserError:
        verdict = self.verdict()
        return UserError(verdict.message if verdict.state == "live" else
                         f"{self.path}: another driver is taking this experiment right now; try again")

    def _acquire_remote(self) -> "ExperimentLock":
        verdict = self.verdict()
        if verdict.state == "live":
            raise UserError(verdict.message)
        try:
            self.path.write_text(json.dumps(self.me))
            time.sleep(REMOTE_SETTLE_S)  # a driver that wrote just after us wins; we see it here
        except OSError as exc:
            raise UserError(f"{self.path}: cannot write the driver lock "
                            f"({str(exc).splitlines()[0]})") from None
        if self.holder() != self.me:
            raise self._refused()
        self._start_heartbeat()
        return self

    def acquire(self) -> "ExperimentLock":
        if self.remote:
            return self._acquire_remote()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                verdict = self.verdict()
                if verdict.state == "live":
                    raise UserError(verdict.message) from None
                if verdict.state == "stale":
                    self._take_over(verdict.text)
                continue
            except OSError as exc:
                raise UserError(f"{self.path}: cannot create the driver lock "
                                f"({exc.strerror or exc})") from None
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
                f.flush()
                os.fsync(f.fileno())
            self._start_heartbeat()
            return self
        raise UserError(f"{self.path}: the driver lock keeps changing hands; another driver is "
                        f"starting on this experiment (see `tune status {self.path.parent}`)")

    def _take_over(self, judged: str | None) -> None:
        """Move the stale lock aside, checking it is still the one judged stale:
        of two drivers taking over at once, the slower must not remove the
        faster one's fresh lock."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{self.me['token']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else moved it: race for the create again
        try:
            now = aside.read_text(errors="replace")
        except OSError:
            now = None
        if now != judged:
            try:
                os.link(aside, self.path)  # put the fresh lock back (fails if one appeared)
            except OSError:
                pass
        try:
            aside.unlink()
        except OSError:
            pass

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
        try:
            if self.holder() == self.me:  # never remove a lock that a takeover gave to another
                self.path.unlink()
        except (OSError, UserError):
            # Storage gone (a lost bucket): the lock stays, stale once its heartbeat
            # ages; the error that ended the run is the one to show, not this.
            pass

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
