"""The README's main job, timed as a user sees it: `tune search
search_spaces/quickstart.yaml` in a fresh folder, each line of its output
stamped with the seconds since the command started, cut into phases.

    python benchmarks/bench_quickstart.py [--runs 3] [--tree DIR ...]

`--tree` runs the command from another checkout of the project (e.g. a
`git worktree` of an older commit) so that before and after are measured in
one run of this script, alternating, on the same machine state.  The phases:

  start -> "sweep" line     interpreter, imports, validation, dataset, Ray start
  -> first epoch result     the Tuner's setup, trial actors starting and
                            importing torch, the first epoch
  -> last trial finished    the training itself (2 trials at a time)
  -> summary printed        reading the experiment back, the summary
  -> process ended          Ray's shutdown and the interpreter's exit

Accuracy is part of the check: every run's best val_accuracy is printed, and
runs that disagree stop the script (a faster quickstart must learn the same).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

PHASES = ("to sweep line", "to first epoch", "training", "summary", "shutdown + exit")


def quickstart_file(tree: Path) -> Path:
    """The tree's quickstart: in the package now, beside it in older trees."""
    return next(p for p in (tree / "tune_pipeline" / "search_spaces" / "quickstart.yaml",
                            tree / "search_spaces" / "quickstart.yaml") if p.exists())


def run_once(tree: Path) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONPATH": str(tree), "RAY_TMPDIR": folder}
        env.pop("RAY_ADDRESS", None)  # a private Ray, as on a machine with no head running
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "tune_pipeline", "search", str(quickstart_file(tree)),
             "--storage-path", str(Path(folder) / "results")],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        stamped = [(time.perf_counter() - start, line.rstrip("\n")) for line in process.stdout]
        process.wait()
        end = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit("\n".join(line for _, line in stamped))

    def first(pattern: str) -> float:
        return next(t for t, line in stamped if re.search(pattern, line))

    def last(pattern: str) -> float:
        return [t for t, line in stamped if re.search(pattern, line)][-1]

    marks = [0.0, first(r"^sweep "), first(r"epoch 1/"), last(r"^\[\d+/\d+\] .* finished"),
             last(r"^experiment: "), end]
    best = re.search(r"^best trial \S+: val_accuracy (\S+)", "\n".join(line for _, line in stamped), re.M)
    return {"phases": [b - a for a, b in zip(marks, marks[1:])], "wall": end,
            "best": best.group(1) if best else "?"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", action="append", type=Path,
                        help="a checkout to time (repeatable); default: this one")
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    results = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree in trees:  # alternating: a machine that slows down slows every tree alike
            results[tree].append(run_once(tree))
    bests = {r["best"] for runs in results.values() for r in runs}
    print(f"tune search quickstart, {args.runs} runs per tree, {os.cpu_count()} cores; "
          f"best val_accuracy {', '.join(sorted(bests))}")
    for tree, runs in results.items():
        commit = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True,
                                text=True).stdout.strip()[:70]
        print(f"\n{tree} ({commit})")
        print(f"  {'phase':<18}" + "".join(f"{'run ' + str(i + 1):>8}" for i in range(len(runs))) + f"{'median':>9}")
        for i, phase in enumerate(PHASES):
            values = [r["phases"][i] for r in runs]
            print(f"  {phase:<18}" + "".join(f"{v:8.2f}" for v in values) + f"{statistics.median(values):9.2f}")
        walls = [r["wall"] for r in runs]
        print(f"  {'wall':<18}" + "".join(f"{v:8.2f}" for v in walls) + f"{statistics.median(walls):9.2f}")
    if len(bests) != 1:
        raise SystemExit(f"the runs disagree on the best val_accuracy: {sorted(bests)}")


if __name__ == "__main__":
    sys.exit(main())
