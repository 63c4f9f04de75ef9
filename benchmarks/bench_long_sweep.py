"""The driver over a long sweep of trivial trials: its CPU time and its own
memory per trial as trials accumulate, and the size of Ray's state file.

    python benchmarks/bench_long_sweep.py --tree /work/main --minutes 8 [--trials 5000]

`tune search` of a grid of `--trials` seeds (digits, 64 images, two epochs:
a trial is Ray's and the driver's work, not training), run as a user runs
it with `--tree`'s code and stopped with Ctrl-C (SIGINT) after `--minutes`
if it has not finished.  Every 5 s: trials started (trial folders), the
driver's CPU seconds (/proc/<pid>/stat), its USS and PSS
(/proc/<pid>/smaps_rollup) and the newest experiment_state file's size.
Prints the samples and, per fifth of the trials, the driver's CPU and the
wall time per trial and the memory added per trial, from the samples taken
before the Ctrl-C (the driver's shutdown after it, not per-trial work, is
printed on its own line).

`--profile-at 500,4500 --profile-out DIR`: when that many trials have
started, py-spy samples the driver for `--profile-seconds` (without
stopping it) into DIR/driver_at_<trials>.txt, collapsed stacks; compare two
windows with `python benchmarks/bench_long_sweep.py --compare A B`: each
frame's share of the driver's samples in both, so what grows per trial shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TRIVIAL = {"dataset": "digits", "model": "small_cnn", "epochs": 2, "batch_size": 64,
           "max_train_images": 64, "max_test_images": 64}


def memory(pid: int) -> tuple[int, int]:
    uss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key == "Pss":
                pss += int(rest.split()[0]) * 1024
            elif key in ("Private_Clean", "Private_Dirty"):
                uss += int(rest.split()[0]) * 1024
    return uss, pss


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def frame_shares(path: Path) -> tuple[dict[str, float], int]:
    """Each frame's share of all samples in a collapsed-stack file (a frame counted once per stack)."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        total += int(n)
        for frame in set(stack.split(";")):
            counts[frame] = counts.get(frame, 0) + int(n)
    return {frame: n / total for frame, n in counts.items()}, total


def compare(early: Path, late: Path, rows: int = 40) -> None:
    a, na = frame_shares(early)
    b, nb = frame_shares(late)
    print(f"share of the driver's samples: {early.name} ({na} samples) -> {late.name} ({nb} samples)")
    for frame in sorted(set(a) | set(b), key=lambda f: -(b.get(f, 0) - a.get(f, 0)))[:rows]:
        print(f"{100 * a.get(frame, 0):6.1f}% -> {100 * b.get(frame, 0):6.1f}%  {frame[:150]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", type=Path)
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--profile-at", default="", help="trial counts at which to sample the driver, 500,4500")
    parser.add_argument("--profile-seconds", type=int, default=30)
    parser.add_argument("--profile-out", type=Path, default=Path("/tmp/long_sweep_profiles"))
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("EARLY", "LATE"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.tree is None:
        parser.error("--tree is required")
    profile_at = sorted(int(n) for n in args.profile_at.split(",") if n)
    profilers = []
    folder = Path(tempfile.mkdtemp(prefix="bench_long_sweep_"))
    rt = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    space = folder / "trivial.yaml"
    space.write_text(yaml.safe_dump({
        "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {**{k: {"value": v} for k, v in TRIVIAL.items()}, "seed": {"values": list(range(args.trials))}}}))
    env = {**os.environ, "PYTHONPATH": str(args.tree.resolve()), "HOME": str(folder), "RAY_TMPDIR": rt,
           "RAY_USAGE_STATS_ENABLED": "0", "TUNE_PIPELINE_CACHE": str(folder / "cache")}
    experiment = folder / "long"
    start = time.monotonic()
    driver = subprocess.Popen([sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "long",
                               "--storage-path", str(folder)], cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    interrupted = False
    before_stop = None  # how many samples were taken before the Ctrl-C
    try:
        while driver.poll() is None:
            time.sleep(5)
            try:
                trials = sum(1 for p in experiment.iterdir() if p.name.startswith("trial_")) \
                    if experiment.exists() else 0
                states = sorted(experiment.glob("experiment_state-*.json")) if experiment.exists() else []
                state = states[-1].stat().st_size if states else 0
                uss, pss = memory(driver.pid)
                samples.append((time.monotonic() - start, trials, cpu_seconds(driver.pid), uss, pss, state))
            except (OSError, ValueError):
                continue
            while profile_at and trials >= profile_at[0]:
                args.profile_out.mkdir(parents=True, exist_ok=True)
                out = args.profile_out / f"driver_at_{profile_at.pop(0)}.txt"
                profilers.append(subprocess.Popen(["py-spy", "record", "--nonblocking", "-p", str(driver.pid),
                                                   "-d", str(args.profile_seconds), "-f", "raw", "-o", str(out)],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if not interrupted and time.monotonic() - start > args.minutes * 60:
                driver.send_signal(signal.SIGINT)
                interrupted = True
                before_stop = len(samples)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
        for profiler in profilers:
            profiler.wait()
        shutil.rmtree(rt, ignore_errors=True)
    print(f"{args.tree}: {samples[-1][1] if samples else 0} of {args.trials} trials started in "
          f"{samples[-1][0] if samples else 0:.0f} s{' (stopped by SIGINT)' if interrupted else ''}; "
          f"exit {driver.returncode}")
    print(f"{'wall s':>7} {'trials':>7} {'driver CPU s':>12} {'USS MB':>7} {'PSS MB':>7} {'state MB':>9}")
    for wall, trials, cpu, uss, pss, state in samples[::6] + samples[-1:]:
        print(f"{wall:7.0f} {trials:7d} {cpu:12.1f} {uss / 2**20:7.0f} {pss / 2**20:7.0f} {state / 2**20:9.1f}")
    if before_stop is not None and before_stop < len(samples):
        last_run, end = samples[before_stop - 1], samples[-1]
        print(f"\nafter the Ctrl-C (the driver's shutdown): driver CPU +{end[2] - last_run[2]:.1f} s, "
              f"USS {last_run[3] / 2**20:.0f} -> up to {max(s[3] for s in samples[before_stop:]) / 2**20:.0f} MB")
    started = [s for s in samples[:before_stop] if s[1] > 0]
    if len(started) > 5:
        last = started[-1][1]
        print(f"\n{'trials':>13} {'wall ms/trial':>14} {'driver CPU ms/trial':>20} {'USS KB/trial':>13} "
              f"{'state KB/trial':>15}")
        marks = [next(s for s in started if s[1] >= last * k / 5) for k in range(1, 6)]
        for a, b in zip([started[0], *marks], marks):
            n = max(b[1] - a[1], 1)
            print(f"{a[1]:6d}-{b[1]:<6d} {1000 * (b[0] - a[0]) / n:14.0f} {1000 * (b[2] - a[2]) / n:20.0f} "
                  f"{(b[3] - a[3]) / 1024 / n:13.0f} {(b[5] - a[5]) / 1024 / n:15.1f}")
    if driver.returncode not in (0, 1, 130):
        print(driver.stderr.read()[-3000:] if driver.stderr else "")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
