"""Quiet `tune train` (small_cnn, 6,144 CIFAR-10 images x 2 epochs) of two
checkouts and variants of the newer one, round robin in ABBA order (no
variant always first), with the median of each: the quiet machine's speed
drifts by more than the differences looked for.

    TUNE_PIPELINE_CACHE=/work/data/cache python benchmarks/quiet_train_variants.py ROUNDS \
        [--before ../before20] [--main-thread ../mainthread]

`--main-thread`: a copy of this checkout whose Watchdog.run calls fit in the
main thread (`return fn()` first thing), to see whether the worker thread
matters.  VARIANTS=0,1,2 picks variants by index.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_shared_cpu import tune_train  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("rounds", type=int)
parser.add_argument("--before", type=Path, default=ROOT.parent / "before20")
parser.add_argument("--main-thread", type=Path, default=Path("/tmp/perf20/mainthread"))
args = parser.parse_args()
repeats = args.rounds
folder = Path(tempfile.mkdtemp(prefix="perf20g2_"))
env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
env.update(HOME=str(folder), TUNE_PIPELINE_CACHE=os.environ.get("TUNE_PIPELINE_CACHE", "/work/data/cache"),
           RAY_USAGE_STATS_ENABLED="0")
cfg = {"model": "small_cnn", "dataset": "imagefolder", "data_dir": "/work/data/cifar10", "epochs": 2,
       "max_train_images": 6144, "max_test_images": 1024}
(folder / "cifar.yaml").write_text(yaml.safe_dump(cfg))
B, A, M = args.before.resolve(), ROOT, args.main_thread.resolve()
variants = [("before", B, {}), ("after", A, {}),
            ("after, GOMP_SPINCOUNT=300000 (libgomp's default wait)", A, {"GOMP_SPINCOUNT": "300000"}),
            ("after, fit in the main thread", M, {}),
            ("before, OMP_WAIT_POLICY=PASSIVE", B, {"OMP_WAIT_POLICY": "PASSIVE"})]
only = os.environ.get("VARIANTS")
if only:
    variants = [variants[int(i)] for i in only.split(",")]
rates = {v[0]: [] for v in variants}
tune_train(A, [str(folder / "cifar.yaml")], folder, env)  # warm
for r in range(repeats):
    for label, tree, extra in (variants if r % 2 == 0 else variants[::-1]):  # ABBA: no variant always first
        rate, wall, waited = tune_train(tree, [str(folder / "cifar.yaml")], folder, {**env, **extra})
        rates[label].append(rate)
        print(f"{r + 1} {label:<55} {rate:6.0f} img/s ({wall:4.1f} s) [{waited}]", flush=True)
print()
first = variants[0][0]
for label, rs in rates.items():
    # Each round's ratio to the first variant of the same round: the machine's drift between rounds cancels.
    paired = "" if label == first else \
        f"  paired median {statistics.median(x / y - 1 for x, y in zip(rs, rates[first])):+.1%} against {first}"
    print(f"{label:<55} median {statistics.median(rs):6.0f}  ({', '.join(f'{x:.0f}' for x in rs)}){paired}")
shutil.rmtree(folder, ignore_errors=True)
