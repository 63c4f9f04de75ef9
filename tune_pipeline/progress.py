"""What a user sees while a sweep runs: a compact live table of trials (on a
terminal) or one line per finished trial (in a log), instead of Ray's output."""

from __future__ import annotations

import sys
import time

from ray import tune

from tune_pipeline.experiment import FAILED, FINISHED, RUNNING
from tune_pipeline.metrics import ORIGINAL_COLUMNS, QUOTED, fmt, quoted_accuracy, selection_note

REFRESH_SECONDS = 1.0
ROWS_SHOWN = 12  # running trials first, then the best finished ones


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and "/" in value:
        return value.rsplit("/", 1)[-1]  # a script path: its file name says enough
    return str(value)


class SweepConsole:
    """Writes the sweep's story to the terminal; errors go to stderr."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live

    def print(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"note: {text}", file=sys.stderr, flush=True)

    def start(self, name, experiment_dir, trial_count, resources, resumed=False) -> None:
        verb = "resuming" if resumed else "sweep"
        gpu = f" + {resources['gpu']:g} GPU" if resources.get("gpu") else ""
        self.print(f"{verb} {name}: {trial_count} trial{'s' if trial_count != 1 else ''}, {resources['cpu']:g} CPU{gpu} each -> {experiment_dir}")

    def finish(self, experiment, best, interrupted: bool, seconds: float) -> None:
        counts = experiment.status_counts()
        self.print("trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
                   + f" in {seconds:.0f} s")
        if best is not None:
            metric, mode = experiment.metric, experiment.mode
            swept = ", ".join(f"{k}={_fmt(best.config.get(k))}" for k in experiment.swept)
            last = best.last
            self.print(f"best trial {best.trial_id}: {metric} "
                       f"{fmt(metric, best.best_value(metric, mode))} "
                       f"at epoch {best.epochs}, with {swept or 'the fixed config'}")
            self.print("  " + "  ".join(f"{c} {fmt(c, last.get(c))}" for c in ORIGINAL_COLUMNS))
            self.print(f"  config: {best.path / 'params.json'}")
            self.print(f"{QUOTED} {fmt(QUOTED, quoted_accuracy(best.history, metric, mode))}: the winner's "
                       f"test accuracy at its best {metric} epoch, {selection_note(metric)}")
        for trial in experiment.failed_trials():
            self.print(f"failed {trial.trial_id}: {trial.error}")
        self.print(f"experiment: {experiment.path}")
        if interrupted:
            self.print(f"interrupted: continue with `tune resume {experiment.path}`")


class LiveTable(tune.Callback):
    """A Tune callback: Ray ignores custom progress reporters in its new
    console output, but callbacks run in the driver on every loop step."""

    def __init__(self, swept: list[str], metric: str, mode: str, console: SweepConsole, total: int = 0):
        self.swept, self.metric, self.mode, self.console = swept, metric, mode, console
        self.total = total  # Ray creates trials lazily: len(trials) is not the sweep's size
        self._live = None
        self._last = 0.0

    # Ray pickles the run config (callbacks included) for `Tuner.restore`; a
    # terminal does not pickle, so a restored table writes to this process's.
    def __getstate__(self):
        return {"swept": self.swept, "metric": self.metric, "mode": self.mode, "total": self.total}

    def __setstate__(self, state):
        self.__init__(console=SweepConsole(), **state)

    def setup(self, **info):
        if self.console is not None and self.console.live:
            from rich.live import Live
            self._live = Live(refresh_per_second=2, transient=False, redirect_stdout=False)
            self._live.start()

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if self._live is not None and now - self._last >= REFRESH_SECONDS:
            self._last = now
            self._live.update(self.table(trials))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._event(trial, trials, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._event(trial, trials, "FAILED")

    def on_experiment_end(self, trials, **info):
        if self._live is not None:
            self._live.update(self.table(trials))
            self._live.stop()
            self._live = None

    def _event(self, trial, trials, what: str) -> None:
        if self.console is None or self._live is not None:
            return
        result = trial.last_result or {}
        # Ray calls this before it marks the trial done: count it by hand.
        done = 1 + sum(t.status in (FINISHED, FAILED) for t in trials if t is not trial)
        swept = " ".join(f"{k}={_fmt(trial.config.get(k))}" for k in self.swept)
        self.console.print(f"[{done}/{max(self.total, len(trials))}] {trial.trial_id} {what} at "
                           f"epoch {result.get('epoch', 0)}: {self.metric} {fmt(self.metric, result.get(self.metric))}"
                           f"  {swept}")

    def table(self, trials):
        from rich.table import Table

        def score(t):
            value = (t.last_result or {}).get(self.metric)
            if value is None:
                return float("-inf")
            return value if self.mode == "max" else -value

        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        title = "  ".join(f"{s.lower()} {n}" for s, n in sorted(counts.items()))
        title += f"  (ranked by {self.metric}, {selection_note(self.metric)})"
        table = Table(title=title, title_justify="left", box=None, pad_edge=False)
        numbers = ("epoch", self.metric, "test_accuracy")
        for column in ["trial", "status", *self.swept, *dict.fromkeys(numbers)]:
            table.add_column(column, justify="right" if column in numbers else "left")
        running = [t for t in trials if t.status == RUNNING]
        others = sorted((t for t in trials if t.status != RUNNING), key=score, reverse=True)
        for t in (running + others)[:ROWS_SHOWN]:
            r = t.last_result or {}
            table.add_row(t.trial_id, t.status.lower(), *[_fmt(t.config.get(k)) for k in self.swept],
                          *[fmt(c, r.get(c)) for c in dict.fromkeys(numbers)])
        return table
