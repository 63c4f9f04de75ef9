"""Memory of a sweep's processes: the driver's and a trial worker's own
(USS: pages no other process maps; PSS: that plus a fair share of the shared
ones), with where it goes, for two checkouts' code in the same run.

    python benchmarks/bench_memory.py --before /work/main [--after .] [--cifar /work/data/cifar10]

1. What each piece costs a process on its own, each in a fresh interpreter:
   Python, `import torch`, what a trial worker imports (torch, Ray Tune, our
   trainable), and the dataset decoded into memory.
2. A trivial sweep (digits) and a CIFAR-10 sweep (image folder, small_cnn),
   each run as `tune search` with each checkout's code: the driver and every
   Ray worker sampled from /proc/<pid>/smaps_rollup every 0.2 s, peaks kept,
   and the trial worker's mappings at its peak split by what they are.

RSS counts every shared library page in every process that maps it, so
summing RSS over processes counts torch's 400 MB of code once per process;
USS and PSS do not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"Rss": "rss", "Pss": "pss", "Private_Clean": "uss", "Private_Dirty": "uss"}


def rollup(pid: int) -> dict | None:
    """{rss, pss, uss} in bytes from /proc/<pid>/smaps_rollup (None once gone)."""
    out = {"rss": 0, "pss": 0, "uss": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in FIELDS:
                    out[FIELDS[key]] += int(rest.split()[0]) * 1024
    except OSError:
        return None
    return out


def kind_of(path: str) -> str:
    if "torch" in path or "libgomp" in path or "mkl" in path:
        return "torch (code, data)"
    if "/ray/" in path or "raylet" in path:
        return "Ray (code)"
    if path.startswith("/dev/shm") or "plasma" in path:
        return "object store (shared memory)"
    if path in ("", "[heap]", "[stack]") or path.startswith("[anon"):
        return "anonymous (Python objects, tensors, dataset copies)"
    if path.startswith("["):
        return "kernel ([vvar], [vdso])"
    return "other libraries and files"


def breakdown(pid: int) -> dict:
    """USS and PSS by kind of mapping, from /proc/<pid>/smaps."""
    out: dict = {}
    kind = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 5)
                if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
                    kind = kind_of(head[5].strip() if len(head) > 5 else "")
                    continue
                key, _, rest = line.partition(":")
                if key in ("Pss", "Private_Clean", "Private_Dirty") and kind:
                    entry = out.setdefault(kind, {"uss": 0, "pss": 0})
                    entry["pss" if key == "Pss" else "uss"] += int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def role(pid: int, driver: int) -> str | None:
    if pid == driver:
        return "driver"
    try:
        args = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    except OSError:
        return None
    if args.startswith("ray::ImplicitFunc") or args.startswith("ray::train_trial"):
        return "trial worker"
    return None


class Sampler(threading.Thread):
    """Peaks of USS/PSS/RSS for the driver and the trial workers, and the
    breakdown of the trial worker at its USS peak."""

    def __init__(self, driver: int):
        super().__init__(daemon=True)
        self.driver, self.peaks, self.worker_breakdown, self.done = driver, {}, {}, False
        self.worker_pids: set[int] = set()

    def run(self):
        while not self.done:
            for pid in [self.driver, *descendants(self.driver)]:
                kind = role(pid, self.driver)
                usage = rollup(pid) if kind else None
                if usage is None:
                    continue
                if kind == "trial worker":
                    self.worker_pids.add(pid)
                peak = self.peaks.setdefault(kind, {"rss": 0, "pss": 0, "uss": 0})
                if kind == "trial worker" and usage["uss"] > peak["uss"]:
                    self.worker_breakdown = breakdown(pid)
                for key in peak:
                    peak[key] = max(peak[key], usage[key])
            time.sleep(0.2)


def sweep(tree: Path, space: Path, folder: Path, env: dict) -> tuple[dict, dict, int, float]:
    env = {**env, "PYTHONPATH": str(tree), "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp")}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "m",
                              "--storage-path", str(folder)], cwd=folder, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(child.pid)
    sampler.start()
    _, err = child.communicate()
    sampler.done = True
    sampler.join()
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    if child.returncode != 0:
        raise SystemExit(f"{tree}: tune search exited {child.returncode}:\n{err[-3000:]}")
    return sampler.peaks, sampler.worker_breakdown, len(sampler.worker_pids), time.perf_counter() - start


PIECES = {
    "python": "pass",
    "import torch": "import torch",
    "a trial worker's imports (torch, Ray Tune, trainable)": "import tune_pipeline.trainable",
    "the driver's imports (CLI, sweep, Ray Tune)": "import tune_pipeline.cli, tune_pipeline.sweep, ray.tune",
}
PIECE_SCRIPT = """
import os, sys
{code}
usage = {{}}
for line in open(f"/proc/{{os.getpid()}}/smaps_rollup"):
    key, _, rest = line.partition(":")
    if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous"):
        k = {{"Rss": "rss", "Pss": "pss", "Anonymous": "anon"}}.get(key, "uss")
        usage[k] = usage.get(k, 0) + int(rest.split()[0]) * 1024
print(usage["uss"], usage["pss"], usage["rss"], usage["anon"])
"""
DATASET = """
import torch
from tune_pipeline.config import validate_config
from tune_pipeline.data import load_for_config
data = load_for_config(validate_config({config!r}))
held = [t for t in (data.train_images, data.test_images, data.val_images) if t is not None]
print(sum(t.numel() * t.element_size() for t in held))
"""


def piece(tree: Path, code: str, env: dict) -> tuple[int, int, int, int]:
    """(USS, PSS, RSS, anonymous) bytes.  Alone, a process shares no library
    pages, so its USS counts their code too; the anonymous part (memory no
    file backs: the heap, Python objects, tensors) is what every further
    process adds in full."""
    done = subprocess.run([sys.executable, "-c", PIECE_SCRIPT.format(code=code)], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(tree)}, check=True)
    uss, pss, rss, anon = map(int, done.stdout.split()[-4:])
    return uss, pss, rss, anon


def mb(n: float) -> str:
    return f"{n / 2**20:7.0f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--cifar", type=Path, default=Path("/work/data/cifar10"))
    parser.add_argument("--trivial-trials", type=int, default=8)
    parser.add_argument("--only", nargs="*", default=["pieces", "trivial", "cifar"])
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    scratch = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    env = {**os.environ, "HOME": str(scratch / "home"), "RAY_USAGE_STATS_ENABLED": "0",
           "TUNE_PIPELINE_CACHE": os.environ.get("TUNE_PIPELINE_CACHE", str(scratch / "cache"))}
    (scratch / "home").mkdir()
    cifar = {"dataset": "imagefolder", "data_dir": str(args.cifar), "model": "small_cnn"}
    try:
        if "pieces" in args.only:
            print(f"{'one process, on its own (after)':<58} {'USS':>7} {'PSS':>7} {'RSS':>7} {'anon':>7}  MB")
            for label, code in PIECES.items():
                uss, pss, rss, anon = piece(trees["after"], code, env)
                print(f"{label:<58} {mb(uss)} {mb(pss)} {mb(rss)} {mb(anon)}")
            for name, config in (("digits", {"dataset": "digits"}), ("CIFAR-10", cifar)):
                done = subprocess.run([sys.executable, "-c", DATASET.format(config=config)], capture_output=True,
                                      text=True, env={**env, "PYTHONPATH": str(trees["after"])}, check=True)
                print(f"{'the ' + name + ' dataset, decoded (uint8 images)':<58} {mb(int(done.stdout.split()[-1]))}")
        spaces = {
            "trivial": {"dataset": "digits", "model": "small_cnn", "epochs": 2, "batch_size": 64,
                        "max_train_images": 256, "max_test_images": 128,
                        "seed": {"values": list(range(args.trivial_trials))}},
            "cifar": {**cifar, "epochs": 1, "batch_size": 256, "seed": {"values": [0, 1]}},
        }
        for name in [n for n in ("trivial", "cifar") if n in args.only]:
            parameters = {k: v if isinstance(v, dict) else {"value": v} for k, v in spaces[name].items()}
            space = scratch / f"{name}.yaml"
            space.write_text(yaml.safe_dump({"method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
                                             "parameters": parameters}))
            print(f"\n{name} sweep: {', '.join(f'{k}={v}' for k, v in spaces[name].items())}")
            print(f"{'':<8} {'process':<14} {'USS':>7} {'PSS':>7} {'RSS':>7}  MB (peaks)")
            for label, tree in trees.items():
                folder = scratch / f"{name}-{label}"
                folder.mkdir()
                peaks, split, workers, wall = sweep(tree, space, folder, env)
                for kind in ("driver", "trial worker"):
                    p = peaks.get(kind, {"uss": 0, "pss": 0, "rss": 0})
                    print(f"{label:<8} {kind:<14} {mb(p['uss'])} {mb(p['pss'])} {mb(p['rss'])}")
                print(f"{'':<8} ({workers} trial worker processes, {wall:.0f} s); the trial worker at its USS "
                      f"peak, by mapping:")
                for kind, usage in sorted(split.items(), key=lambda kv: -kv[1]["pss"]):
                    print(f"{'':<10} {kind:<52} USS {mb(usage['uss'])} PSS {mb(usage['pss'])}")
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
