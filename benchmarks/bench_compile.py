"""What `compile: true` costs a trial, and what inductor's on-disk cache saves
the next one.

The project's own training step (`train._Runner`, bf16 autocast where the CPU
has it, channels_last, test-time flip) on random 32x32 RGB images, one
subprocess per case so no cache survives that should not:

  eager       compile off: the steady epoch the compile has to beat
  cold        first trial, fresh process, EMPTY inductor cache folder
  warm-disk   second trial, NEW process, the folder `cold` filled
  warm-proc   second trial in the SAME process as a first one (a reused Ray
              actor): a new model instance compiled again

Compile cost = first epoch's wall time minus a steady epoch's (the fastest of
the later ones; same steps: train, validation, test).  Not "time to first step": one epoch compiles
several graphs (the train step, the last smaller batch, eval without grad at
the eval batch size, its last batch), and a trial pays all of them.  The
first step's time is printed beside it.

    python benchmarks/bench_compile.py [--models small_cnn resnet18] [--train 1000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _dataset(n_train: int, n_test: int):
    import torch
    from tune_pipeline.data import Dataset

    g = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)  # noqa: E731
    labels = lambda n: torch.randint(0, 10, (n,), generator=g)  # noqa: E731
    return Dataset("random", images(n_train), labels(n_train), images(n_test), labels(n_test),
                   [str(i) for i in range(10)], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _counters() -> dict:
    from torch._dynamo.utils import counters
    keys = {"fxgraph_cache_hit", "fxgraph_cache_miss", "fxgraph_cache_bypass"}
    out = {k: v for k, v in counters["inductor"].items() if k in keys}
    out.update({f"aot_{k}": v for k, v in counters["aot_autograd"].items() if k.startswith("autograd_cache")})
    out["graphs"] = counters["stats"]["unique_graphs"]
    return out


def _trial(model: str, compile_: bool, dataset, epochs: int) -> dict:
    """One trial's epochs; seconds per phase and the cache counters it moved."""
    import torch
    from torch._dynamo.utils import counters
    from tune_pipeline.config import validate_config
    from tune_pipeline.train import _Runner

    counters.clear()
    cfg = validate_config({"model": model, "compile": compile_, "device": "cpu", "epochs": epochs,
                           "val_fraction": 0.1})
    start = time.perf_counter()
    runner = _Runner(cfg, dataset)
    build = time.perf_counter() - start
    first_step = {}

    def on_batch(step, _total):
        if step == 1 and not first_step:
            first_step["s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    e1 = runner.run_epoch(on_batch)
    epoch1 = time.perf_counter() - t0
    later = []
    for _ in range(epochs - 1):
        t0 = time.perf_counter()
        runner.run_epoch(None)
        later.append(time.perf_counter() - t0)
    steady = min(later)
    return {"build": build, "first_step": first_step["s"], "epoch1": epoch1, "steady": steady,
            "compile": epoch1 - steady, "steps": runner.steps_per_epoch,
            "train_images_per_s": e1["images_per_second"], "amp": str(runner.amp_dtype),
            "threads": torch.get_num_threads(), **_counters()}


def worker(args) -> None:
    dataset = _dataset(args.train, args.test)
    results = [_trial(args.model, args.case != "eager", dataset, args.epochs)]
    if args.case == "warm-proc":  # as a reused actor: the next trial builds a new model
        results.append(_trial(args.model, True, dataset, args.epochs))
    print(json.dumps(results[-1]))


def run_case(case: str, model: str, cache: Path, args) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, __file__, "--worker", case, "--model", model,
           "--train", str(args.train), "--test", str(args.test), "--epochs", str(args.epochs)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{case} {model} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["small_cnn", "resnet18"])
    parser.add_argument("--train", type=int, default=1000, help="training images (before the 10%% val split)")
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3, help="per trial: the first, then steady ones")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.case = args.worker
        return worker(args)

    import torch
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, batch 256, "
          f"{args.train} train images (10% held out for val), {args.test} test, "
          f"{args.epochs} epochs per trial")
    header = (f"{'model':<10} {'case':<10} {'compile s':>9} {'1st step s':>10} {'epoch1 s':>8} "
              f"{'steady s':>8} {'img/s':>6} {'fx hit/miss':>11} {'aot hit/miss':>12} {'graphs':>6}")
    print(header)
    print("-" * len(header))
    for model in args.models:
        with tempfile.TemporaryDirectory() as disk, tempfile.TemporaryDirectory() as proc:
            rows = {}
            for case, cache in (("eager", Path(proc)), ("cold", Path(disk)),
                                ("warm-disk", Path(disk)), ("warm-proc", Path(proc))):
                r = rows[case] = run_case(case, model, cache, args)
                n_train = round(args.train * 0.9)
                print(f"{model:<10} {case:<10} {r['compile']:9.2f} {r['first_step']:10.2f} {r['epoch1']:8.2f} "
                      f"{r['steady']:8.2f} {n_train / r['steady']:6.0f} "
                      f"{r.get('fxgraph_cache_hit', 0):>5}/{r.get('fxgraph_cache_miss', 0):<5} "
                      f"{r.get('aot_autograd_cache_hit', 0):>6}/{r.get('aot_autograd_cache_miss', 0):<5} "
                      f"{r['graphs']:6}", flush=True)
        cold = rows["cold"]["compile"]
        for case in ("warm-disk", "warm-proc"):
            print(f"  {model} {case}: {rows[case]['compile'] / cold:.1%} of the cold compile")
        compiled = min(rows[c]["steady"] for c in ("cold", "warm-disk", "warm-proc"))
        saved = rows["eager"]["steady"] - compiled
        print(f"  {model}: steady epoch eager {rows['eager']['steady']:.2f} s, compiled (best of 3 "
              f"trials) {compiled:.2f} s")
        if saved > 0:
            per_image = saved / n_train  # seconds saved per training image (its eval share included)
            print(f"  {model}: the cold compile pays back after {cold / per_image:,.0f} training images, "
                  f"a warm-disk one after {rows['warm-disk']['compile'] / per_image:,.0f}")
        else:
            print(f"  {model}: the compiled epoch is not faster than eager: compiling never pays back here")

if __name__ == "__main__":
    main()
