"""Training speed when the CPU is shared: `tune train` (and `tune train
--from`) with two checkouts' code against the original PIL DataLoader loop,
on a quiet machine and beside one busy process, in the same run.

    python benchmarks/bench_shared_cpu.py --before /work/main [--after .] [--conditions quiet busy pinned]

Real CIFAR-10 (`dataset: imagefolder`, /work/data/cifar10), small_cnn, the
shipped defaults (batch 256, amp auto, channels_last, the basic transform).
The busy process is `python3 -c "while True: pass"`, free to run on any core
(`busy`) or pinned to core 0 (`pinned`).  Each `tune train` is its own
process, run as a user runs it; its speed is the training images/s of its
last epoch (what the epoch line prints), and its whole time is timed too.
The original loop is benchmarks/bench_train.py's: torchvision ImageFolder,
per-image PIL transforms, a DataLoader with 2 workers, batch 128, fp32 NCHW.
`--sweep` adds a 2-trial sweep (one CPU, so one thread, per trial).
`--repeats N` runs each condition's `tune train` variants N times, round
robin, so that a drift of this shared VM's speed reaches every variant alike.
Each row ends with how that run's OpenMP threads waited, as libgomp itself
says (OMP_DISPLAY_ENV): [sleep] is the PASSIVE policy, [spin 300000] its default.
"after, OMP_WAIT_POLICY=PASSIVE" is our code with the sleeping wait forced
(a user's own policy wins over ours), quiet or not: what choosing the
policy by the load (cpu_share.py) changes against always sleeping.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CIFAR = Path("/work/data/cifar10")
ORIGINAL = """
import sys, torch
sys.path.insert(0, {bench!r})
from pathlib import Path
from bench_train import baseline_loader, make_step, time_loop
loader = baseline_loader(Path({data!r}), 2)
print(time_loop(iter(loader), {batches}, make_step("small_cnn", channels_last=False, amp=False)))
"""


def busy_process(condition: str):
    if condition == "quiet":
        return None
    command = [sys.executable, "-c", "while True: pass"]
    if condition == "pinned":
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command)
    time.sleep(1.0)
    return process


def original_loop(data: Path, batches: int, env: dict) -> float:
    done = subprocess.run([sys.executable, "-c", ORIGINAL.format(bench=str(ROOT / "benchmarks"), data=str(data),
                                                                 batches=batches)],
                          capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)}, check=True)
    return float(done.stdout.split()[-1])


def tune_train(tree: Path, args: list[str], folder: Path, env: dict) -> tuple[float, float, str]:
    """(images/s of the last epoch, wall seconds, how libgomp's threads waited) of one `tune train`."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tune_pipeline", "train", *args, "-o", str(folder / "out"),
                           "--overwrite", "-q"], capture_output=True, text=True, cwd=folder,
                          env={**env, "PYTHONPATH": str(tree), "OMP_DISPLAY_ENV": "VERBOSE"})
    wall = time.perf_counter() - start
    rates = re.findall(r"\| (\d+) img/s", done.stdout)
    if done.returncode != 0 or not rates:
        raise SystemExit(f"{tree}: tune train {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    # libgomp's own display: a spin count of 0 is the sleeping (PASSIVE) wait, 300000 its default.
    spin = re.search(r"GOMP_SPINCOUNT = '(\d+)'", done.stderr)
    waited = "?" if spin is None else ("sleep" if spin.group(1) == "0" else f"spin {spin.group(1)}")
    return float(rates[-1]), wall, waited


def sweep(tree: Path, space: Path, folder: Path, env: dict) -> list[float]:
    """images/s of each epoch of each trial of a 2-trial sweep."""
    storage = folder / f"sweep-{tree.name}"
    rt = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    done = subprocess.run([sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "s",
                           "--storage-path", str(storage)], capture_output=True, text=True, cwd=folder,
                          env={**env, "PYTHONPATH": str(tree), "RAY_TMPDIR": rt})
    shutil.rmtree(rt, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: tune search: exit {done.returncode}\n{done.stderr[-3000:]}")
    rates = [json.loads(line)["images_per_second"] for result in (storage / "s").glob("trial_*/result.json")
             for line in result.read_text().splitlines()]
    shutil.rmtree(storage, ignore_errors=True)
    return rates


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--conditions", nargs="*", default=["quiet", "busy", "pinned"])
    parser.add_argument("--images", type=int, default=6144, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30, help="the original loop's timed batches of 128")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the tune train variants")
    parser.add_argument("--data", type=Path, default=CIFAR)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    folder = Path(tempfile.mkdtemp(prefix="bench_shared_cpu_"))
    cache = Path(os.environ.get("TUNE_PIPELINE_CACHE", "/tmp/tune_pipeline_bench_cache"))
    inherited = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                                    "OMP_NUM_THREADS")}
    env = {**inherited, "HOME": str(folder), "TUNE_PIPELINE_CACHE": str(cache), "RAY_USAGE_STATS_ENABLED": "0"}
    config = {"model": "small_cnn", "dataset": "imagefolder", "data_dir": str(args.data), "epochs": args.epochs,
              "max_train_images": args.images, "max_test_images": 1024}
    (folder / "cifar.yaml").write_text(yaml.safe_dump(config))
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_experiment import make_experiment

    # The basic script by its path: the baseline's code may predate scripts named by
    # their stem ('basic'), the default our fake experiment's configs would carry.
    script = ROOT / "tune_pipeline" / "transforms" / "runtime_transform_basic.py"
    experiment = make_experiment(folder, {**{k: [v] for k, v in config.items() if k != "epochs"},
                                          "runtime_transform_script": [str(script)]}, name="exp",
                                 epochs=args.epochs, metric="val_accuracy")
    space = folder / "sweep.yaml"
    space.write_text(yaml.safe_dump({"method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
                                     "parameters": {**{k: {"value": v} for k, v in config.items()},
                                                    "seed": {"values": [0, 1]}}}))
    try:
        tune_train(trees["after"], [str(folder / "cifar.yaml")], folder, env)  # decode once, into the cache
        print(f"torch threads by default: {os.cpu_count()} cores; small_cnn, {args.images} images x "
              f"{args.epochs} epochs; images/s of the last epoch (whole run's seconds)")
        variants = [("before", trees["before"], {}),
                    ("before, OMP_NUM_THREADS=1", trees["before"], {"OMP_NUM_THREADS": "1"}),
                    ("after, OMP_WAIT_POLICY=PASSIVE", trees["after"], {"OMP_WAIT_POLICY": "PASSIVE"}),
                    ("after", trees["after"], {})]
        for condition in args.conditions:
            busy = busy_process(condition)
            try:
                base = original_loop(args.data, args.batches, env)
                print(f"\n{condition}: original loop (PIL DataLoader, 2 workers) {base:6.0f} img/s", flush=True)
                for round_ in range(args.repeats):
                    for what, run_args in (("tune train", [str(folder / "cifar.yaml")]),
                                           ("tune train --from", ["--from", str(experiment)])):
                        for label, tree, extra in (variants if what == "tune train" else
                                                   [variants[0], variants[-1]]):
                            rate, wall, waited = tune_train(tree, run_args, folder, {**env, **extra})
                            mark = f"{round_ + 1} " if args.repeats > 1 else ""
                            print(f"  {mark}{what:<18} {label:<31} {rate:6.0f} img/s ({wall:5.1f} s)  "
                                  f"{rate / base:4.1f}x the original loop  [{waited}]", flush=True)
                if args.sweep:
                    for label, tree in trees.items():
                        rates = sweep(tree, space, folder, env)
                        print(f"  sweep, 2 trials x 1 thread {label:<7} per trial-epoch: "
                              f"{', '.join(f'{r:.0f}' for r in sorted(rates))} img/s", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
