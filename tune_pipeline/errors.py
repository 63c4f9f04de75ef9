"""The two kinds of failure a user sees, and the exit codes they map to.

`UserError` is bad input (exit 2): it carries every problem found, so one
invocation reports them all.  `RunFailed` is a run that started and broke
(exit 1): NaN loss, out of memory, a crashing transform script.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's convention for a run stopped by SIGINT


class UserError(Exception):
    """Bad input found before work started; `problems` lists each one."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    def one_line(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return f"{len(self.problems)} problems: " + "; ".join(self.problems)


class RunFailed(Exception):
    """A run that started and could not finish (NaN loss, OOM, ...)."""
