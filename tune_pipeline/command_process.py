"""How a `tune` process ends: standard output that never raises (a full
disk or a closed pipe must not lose a sweep to its own progress lines),
SIGTERM taken as Ctrl-C, and the exit of a command that started Ray without
the interpreter's teardown.  `cli.main` wires them together."""

from __future__ import annotations

import errno
import os
import signal
import sys


class GuardedOutput:
    """Standard output that never raises: the first write the system refuses
    (a full disk, a pipe whose reader has gone) is recorded, the stream is
    pointed at /dev/null, and the command goes on, so a sweep or a training
    run is not lost to its own progress lines.  `main` then says what happened."""

    def __init__(self, stream):
        self._stream = stream
        self.lost: OSError | None = None

    def _lose(self, exc: OSError) -> None:
        if self.lost is None:
            self.lost = exc
        try:  # what the stream still buffers goes nowhere, not to a failing flush at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def write(self, text):
        if self.lost is not None:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._lose(exc)
            return len(text)

    def flush(self) -> None:
        if self.lost is not None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._lose(exc)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def message(self) -> str:
        exc = self.lost
        if exc.errno == errno.EPIPE:
            return "standard output was closed before the output ended (its reader stopped reading)"
        return f"cannot write to standard output ({exc.strerror or exc}); the output from there on is lost"


_received: list[int] = []  # the signals terminate_as_interrupt took in this process


def interrupted_by_sigterm() -> bool:
    """Whether the interrupt being handled came from SIGTERM, not Ctrl-C."""
    return signal.SIGTERM in _received


def terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM (a scheduler's time limit, `kill`) does what Ctrl-C does: a
    sweep saves its state and prints how to resume it, a training run writes
    its summary.  Ray Tune's own SIGINT handler is called while it runs."""
    _received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not terminate_as_interrupt:
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job) or default: interrupt all the same
        raise KeyboardInterrupt


def exit_now(code: int) -> None:
    """End a command that started Ray without Python's interpreter teardown.

    After a sweep, everything is on disk and printed by the time the command
    returns; what follows is Ray's shutdown (1.2-1.9 s) and then the interpreter
    finalizing torch, Ray and their threads (1.2 s measured after the
    quickstart, BENCHMARKS.md), a twentieth of the README's main job spent on
    nothing a user sees.  So Ray is shut down here, the exit handlers run
    (wandb, which Ray Tune imports, removes its temporary folders in one;
    logging flushes in another: 0.02 s in all), the streams are flushed, and
    the process ends without finalizing its modules.  A command that never
    started Ray exits the ordinary way."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        sys.exit(code)
    from tune_pipeline.internals import exit_without_teardown

    try:
        ray.shutdown()
    finally:
        exit_without_teardown(code)
