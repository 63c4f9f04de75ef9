"""The two kinds of failure a user sees, and the exit codes they map to.

`UserError` is bad input (exit 2): it carries every problem found, so one
invocation reports them all.  `RunFailed` is a run that started and broke
(exit 1): NaN loss, out of memory, a crashing transform script.

Whatever a message holds (30,000 unknown keys, a value's repr of a megabyte,
a library's paragraph), the line a user sees is cut to a readable length and
says how much more there was: `shorten` and `UserError.one_line`.
A write that fails (a full or read-only disk) is bad input too: `written`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's convention for a run stopped by SIGINT; SIGTERM too (cli.main)

MAX_PROBLEMS_SHOWN = 12    # a refusal names this many problems, then counts the rest
MAX_PROBLEM_CHARS = 1_000  # one problem (a huge value's repr) is cut here; a list of keys fits
MAX_MESSAGE_CHARS = 2_000  # and any one error line here


KEPT_TAIL_CHARS = 160      # a cut keeps a problem's end too: that is where the fix is named


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to about `limit` characters, its middle left out (saying how
    much): the start names the file and key, the end how to fix it."""
    if len(text) <= limit:
        return text
    tail = min(KEPT_TAIL_CHARS, limit // 3)
    rest = len(text) - limit
    return f"{text[:limit - tail]}... ({rest:,} more characters) ...{text[-tail:]}"


class UserError(Exception):
    """Bad input found before work started; `problems` lists each one."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    def one_line(self) -> str:
        if len(self.problems) == 1:
            return shorten(self.problems[0])
        shown: list[str] = []
        length = 0
        for problem in self.problems[:MAX_PROBLEMS_SHOWN]:
            problem = shorten(problem, MAX_PROBLEM_CHARS)
            if shown and length + len(problem) > MAX_MESSAGE_CHARS:
                break
            shown.append(problem)
            length += len(problem) + 2
        rest = len(self.problems) - len(shown)
        more = f"; and {rest:,} more" if rest else ""
        return f"{len(self.problems):,} problems: " + "; ".join(shown) + more


def written(path, write):
    """Run `write()`, turning a failed write (disk full, read-only) into one line."""
    try:
        return write()
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or path} ({exc.strerror or exc})") from None


class RunFailed(Exception):
    """A run that started and could not finish (NaN loss, OOM, ...)."""
