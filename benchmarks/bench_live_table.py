"""The live table's driver time per event as a sweep grows.

A sweep's trials are fed through the table's Ray hooks without Ray: a window
of the same events (20 trials made, started, 3 epochs each with a refresh
after every epoch, then finished) is timed once N trials exist and all but
the window's are done, at N = 50, 500 and 5,000.  Two tables run in this one
script, alternating: this tree's `LiveTable` and the one of another tree
(`--base`, default `main`: its progress.py read with `git show`), so before
and after are measured on the same machine state.  Both modes are timed: a
log (a line per epoch and per finished trial) and a terminal (the table
built and rendered at every refresh, 80x30).

    python benchmarks/bench_live_table.py [--base main] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from common import ROOT

SWEPT = ["model", "runtime_transform_script", "optimizer", "learning_rate", "momentum", "weight_decay",
         "label_smoothing"]
SCRIPTS = [str(ROOT / "transforms" / f"runtime_transform_{n}.py") for n in ("basic", "advanced")]
WINDOW = 20  # trials whose events are timed
EPOCHS = 3


class FakeTrial:
    """What the table reads of Ray's Trial."""

    def __init__(self, index: int, rng: random.Random):
        self.trial_id = f"9f3e1_{index:05d}"
        self.config = {"model": rng.choice(["resnet18", "preact_resnet18", "vgg16"]),
                       "runtime_transform_script": rng.choice(SCRIPTS), "optimizer": rng.choice(["sgd", "adamw"]),
                       "learning_rate": 10 ** rng.uniform(-4, -0.7), "momentum": rng.uniform(0.8, 0.99),
                       "weight_decay": 10 ** rng.uniform(-5, -2), "label_smoothing": rng.choice([0.0, 0.1]),
                       "epochs": EPOCHS}
        self.status = "PENDING"
        self.last_result = {}
        self.error_file = None
        self.path = None


class RenderingLive:
    """Stands in for rich's Live: renders each update, as Live's refresh does."""

    def __init__(self):
        self.console = Console(width=80, height=30, file=io.StringIO(), force_terminal=True, color_system=None)

    def update(self, renderable):
        self.console.file.seek(0)
        self.console.file.truncate()
        self.console.print(renderable)

    def stop(self):
        pass


def load_progress(source: str, name: str):
    """A progress.py (this tree's, or another's text) as a module of its own."""
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def window_seconds(module, count: int, live: bool) -> tuple[float, int]:
    """Seconds spent in the table's hooks during the window, and its events."""
    rng = random.Random(count)
    trials = [FakeTrial(i, rng) for i in range(count - WINDOW)]
    for trial in trials:  # done before the window: as Ray's list holds them
        trial.status = "TERMINATED"
        trial.last_result = {"epoch": EPOCHS, "val_accuracy": rng.random()}
    table = module.LiveTable(SWEPT, "val_accuracy", "max",
                             module.SweepConsole(stream=io.StringIO(), live=False), total=count)
    table.setup()
    if live:
        table._live = RenderingLive()
    table._last = -1e9
    table.on_step_end(0, trials)  # the table takes in what exists (once, outside the window)
    events = 0
    start = time.perf_counter()
    for index in range(count - WINDOW, count):
        trial = FakeTrial(index, rng)
        trials.append(trial)
        trial.status = "RUNNING"
        table.on_trial_start(0, trials, trial)
        events += 1
        for epoch in range(1, EPOCHS + 1):
            trial.last_result = {"epoch": epoch, "val_accuracy": 0.1 * epoch, "best_val_accuracy": 0.1 * epoch}
            table.on_trial_result(0, trials, trial, trial.last_result)
            table._last = -1e9  # a refresh is due: the worst case, one per event
            table.on_step_end(0, trials)
            events += 1
        trial.status = "TERMINATED"
        table.on_trial_complete(0, trials, trial)
        events += 1
    return time.perf_counter() - start, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="git revision to compare against")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--counts", type=int, nargs="+", default=[50, 500, 5000])
    args = parser.parse_args()
    # The table lives in live_table.py (older trees: in progress.py); a
    # live_table.py imports the rendering from this tree's progress.py.
    base_source = next(run.stdout for run in (
        subprocess.run(["git", "-C", str(ROOT), "show", f"{args.base}:tune_pipeline/{name}"],
                       capture_output=True, text=True) for name in ("live_table.py", "progress.py"))
        if run.returncode == 0)
    trees = {args.base: load_progress(base_source, "progress_base"),
             "this tree": load_progress((ROOT / "tune_pipeline" / "live_table.py").read_text(), "progress_new")}
    print(f"ms of driver time per event (median of {args.repeats}), {WINDOW} trials x "
          f"({EPOCHS} epochs + start + end) timed once N trials exist")
    print(f"{'mode':<9} {'N':>6} " + " ".join(f"{name:>12}" for name in trees))
    for live in (False, True):
        for count in args.counts:
            cells = []
            for name, module in trees.items():
                runs = []
                for _ in range(args.repeats):
                    seconds, events = window_seconds(module, count, live)
                    runs.append(1000 * seconds / events)
                cells.append(f"{statistics.median(runs):12.3f}")
            print(f"{'terminal' if live else 'log':<9} {count:>6} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    sys.exit(main())
