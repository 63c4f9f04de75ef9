"""The readers at scale: `tune status`, `export`, `plot` and `report` on one
experiment of N trials x E epochs, with two checkouts' code in the same run.

The experiment is written by tests/fake_experiment.py the way a real sweep
leaves it (Ray's own state entries, result rows carrying the config, kept
checkpoint folders), with a share of trials stopped early and failed.  Each
command runs as a user runs it, `python -m tune_pipeline ...` in a fresh
process, once per checkout (PYTHONPATH picks the code); its CPU time (user +
system) and peak resident memory come from the kernel (wait4's rusage).
The experiment is written by a child process too: Linux folds the memory
image a child replaces at exec into its ru_maxrss, so a parent that had
built 1 GB of trials in itself gave every command a 1.1 GB "peak".

    python benchmarks/bench_readers.py --before /work/main [--trials 5000 --epochs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"status": (1.5, 400), "status-tty": (1.5, 400), "export": (2.0, 400), "plot": (8.0, 400),
         "report": (10.0, 400)}
# `status` writes to a file, so it lists every trial; `status-tty` is the same
# command as on an 80x30 terminal (rich reads these), whose table shows 30 rows.
TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "80", "LINES": "30"}


def sweep_grid(trials: int) -> dict:
    """Four swept keys, as a random search over a small space would have."""
    assert trials % 100 == 0, "--trials: a multiple of 100"
    return {"learning_rate": [round(1e-4 * 2 ** i, 8) for i in range(10)], "optimizer": ["sgd", "adamw"],
            "batch_size": [64, 128, 256, 512, 1024], "seed": list(range(trials // 100))}


def make(folder: Path, trials: int, epochs: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_experiment import make_experiment

    # ASHA-like: a third stopped at a quarter of the epochs; one in fifty failed.
    statuses = {i: ("TERMINATED", max(1, epochs // 4)) for i in range(0, trials, 3)}
    statuses.update({i: ("ERROR", max(1, epochs // 2)) for i in range(1, trials, 50)})
    return make_experiment(folder, sweep_grid(trials), name="scale", epochs=epochs, statuses=statuses)


def make_in_child(folder: Path, trials: int, epochs: int) -> None:
    """make(), in its own process, so that this one stays small (see the docstring)."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); from pathlib import Path; "
            f"import bench_readers; bench_readers.make(Path({str(folder)!r}), {trials}, {epochs})")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def run(tree: Path, args: list[str], cwd: Path, extra: dict | None = None) -> tuple[float, float, float]:
    """(CPU seconds, peak MB, wall seconds) of one command with `tree`'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree), "MPLBACKEND": "Agg", **(extra or {})}
    start = time.perf_counter()
    with open(cwd / "out.txt", "w") as out:
        child = subprocess.Popen([sys.executable, "-m", "tune_pipeline", *args], cwd=cwd, env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise SystemExit(f"{tree}: tune {' '.join(args)} exited {child.returncode}:\n"
                         + (cwd / "out.txt").read_text()[-2000:])
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, wall


def commands(experiment: Path, out: Path) -> dict[str, list[str]]:
    return {"status": ["status", str(experiment)], "status-tty": ["status", str(experiment)],
            "export": ["export", str(experiment), "--output", str(out / "best.csv")],
            "plot": ["plot", str(experiment), "--output", str(out / "plots")],
            "report": ["report", str(experiment), "--output", str(out / "report.html")]}


def revision(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip()[:70] + (" (+ uncommitted changes)" if dirty else "")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="the baseline checkout (e.g. /work/main)")
    parser.add_argument("--after", type=Path, default=ROOT, help="the changed checkout (default: this one)")
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--only", nargs="*", default=list(GOALS), choices=list(GOALS))
    parser.add_argument("--keep", type=Path, help="write the experiment here and keep it (reused if there)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_readers_"))
    try:
        home = args.keep or scratch
        experiment = home / "scale"
        if not experiment.exists():
            start = time.perf_counter()
            make_in_child(home, args.trials, args.epochs)
            print(f"wrote {experiment} in {time.perf_counter() - start:.0f} s")
        size = sum(f.stat().st_size for f in experiment.rglob("*") if f.is_file())
        state = max(experiment.glob("experiment_state-*.json"))
        print(f"{args.trials} trials x {args.epochs} epochs: {size / 2**20:.0f} MiB on disk, "
              f"Ray state file {state.stat().st_size / 2**20:.1f} MiB; Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} cores")
        trees = {"before": args.before.resolve(), "after": args.after.resolve()}
        for label, tree in trees.items():
            print(f"{label}: {tree} at {revision(tree)}")
        print(f"\n{'command':<10} {'before CPU':>11} {'peak':>8}   {'after CPU':>10} {'peak':>8}   goal")
        for name in args.only:
            figures = {}
            for label, tree in trees.items():
                out = scratch / label
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                figures[label] = run(tree, commands(experiment, out)[name], out,
                                     TERMINAL if name == "status-tty" else None)
            (b_cpu, b_mb, _), (a_cpu, a_mb, _) = figures["before"], figures["after"]
            cpu_goal, mb_goal = GOALS[name]
            print(f"{name:<10} {b_cpu:9.2f} s {b_mb:5.0f} MB   {a_cpu:8.2f} s {a_mb:5.0f} MB   "
                  f"<= {cpu_goal:g} s, <= {mb_goal} MB: {'met' if a_cpu <= cpu_goal and a_mb <= mb_goal else 'NOT met'}",
                  flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
