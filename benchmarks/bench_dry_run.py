"""CPU (user + sys) and peak memory of `tune search quickstart --dry-run` (or
any other `tune` command line), this tree against another checkout of the
project, alternating run by run so both see the same machine state.  Each run
is a fresh interpreter, as a user's is: what it costs is mostly what it imports.

    flock /tmp/cpu.lock python benchmarks/bench_dry_run.py --base /path/to/other/checkout [--repeats 7]
    flock /tmp/cpu.lock python benchmarks/bench_dry_run.py --base ... -- status ray_results/NAME
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(tree: Path, command: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of one run of `tune COMMAND` with `tree`'s code."""
    run_env = dict(env, PYTHONPATH=str(tree))
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([sys.executable, "-m", "tune_pipeline", *command],
                                   cwd=cwd, env=run_env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{tree}: tune {' '.join(command)} failed: {errors.read().decode()[-500:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="another checkout to compare against")
    parser.add_argument("command", nargs="*", default=["search", "quickstart", "--dry-run"],
                        help="the tune command line (after --)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "this tree": ROOT}
    scratch = Path(tempfile.mkdtemp(prefix="bench_dry_run_"))
    env = dict(os.environ, HOME=str(scratch), RAY_TMPDIR=str(scratch))
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            runs[name].append(one_run(tree, args.command, scratch, env))
    print(f"tune {' '.join(args.command)}, {args.repeats} runs each, alternating")
    print(f"{'tree':<10} {'CPU s median':>12} {'min':>6} {'max':>6} {'peak RSS MB':>12}")
    for name, results in runs.items():
        cpu = [c for c, _ in results]
        rss = statistics.median(r for _, r in results)
        print(f"{name:<10} {statistics.median(cpu):>12.2f} {min(cpu):>6.2f} {max(cpu):>6.2f} {rss:>12.0f}")


if __name__ == "__main__":
    main()
