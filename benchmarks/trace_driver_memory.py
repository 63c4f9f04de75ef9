"""Where the driver's memory goes over a sweep: `tune search` run under
tracemalloc, a snapshot when the experiment holds each of TRACE_AT trial
folders (then Ctrl-C), and what grew between two snapshots, per trial, by
owner (ours: the first frame in tune_pipeline; Ray's: in ray; counted from
the allocation outwards).  tracemalloc slows the driver about 30-fold with
12 frames: a few hundred trivial trials take minutes.

    # the driver (PYTHONPATH picks the code; HOME, RAY_TMPDIR of your own):
    TRACE_EXPERIMENT=DIR/long TRACE_AT=100,400 TRACE_OUT=OUT \
        python benchmarks/trace_driver_memory.py search trivial.yaml --name long --storage-path DIR
    # the breakdown:
    python benchmarks/trace_driver_memory.py --compare OUT/snap_100.pickle OUT/snap_400.pickle TRIALS
"""
import gc
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path


def uss_mb() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty"))) // 1024


def watch(experiment: Path, marks: list[int], out: Path) -> None:
    for mark in marks:
        while True:
            time.sleep(0.5)
            n = sum(1 for p in experiment.iterdir() if p.name.startswith("trial_")) if experiment.exists() else 0
            if n >= mark:
                break
        gc.collect()
        tracemalloc.take_snapshot().dump(str(out / f"snap_{mark}.pickle"))
        current, _ = tracemalloc.get_traced_memory()
        with open(out / "marks.txt", "a") as f:
            f.write(f"{mark} trials={n} traced_MB={current / 2**20:.1f} uss_MB={uss_mb()} "
                    f"cpu_s={time.process_time():.1f}\n")
    os.kill(os.getpid(), signal.SIGINT)


def owner(tb):
    for frame in reversed(tb):  # most recent first
        f = frame.filename
        if "/tune_pipeline/" in f:
            return "ours", f"{f.split('/tune_pipeline/')[-1]}:{frame.lineno}"
        if "/site-packages/ray/" in f:
            return "ray", f"{f.split('/site-packages/')[-1]}:{frame.lineno}"
    f = tb[-1]
    return "other", f"{f.filename.split('/')[-1]}:{f.lineno}"



def compare(first: str, second: str, trials: int) -> None:
    a, b = tracemalloc.Snapshot.load(first), tracemalloc.Snapshot.load(second)
    by_owner, by_site, by_file = defaultdict(int), defaultdict(lambda: [0, 0]), defaultdict(int)
    for stat in b.compare_to(a, "traceback"):
        who, site = owner(stat.traceback)
        by_owner[who] += stat.size_diff
        by_site[(who, site)][0] += stat.size_diff
        by_site[(who, site)][1] += stat.count_diff
        by_file[(who, site.rsplit(":", 1)[0])] += stat.size_diff
    n = trials
    total = sum(by_owner.values())
    print(f"traced growth over {n} trials: {total / 2**20:.1f} MB, {total / n / 1024:.1f} KB per trial")
    for who, size in sorted(by_owner.items(), key=lambda x: -x[1]):
        print(f"  {who:6} {size / 2**20:8.2f} MB  {size / n / 1024:7.1f} KB/trial")
    print("by file (the first of ours or Ray's frames from the allocation outward):")
    for (who, f), size in sorted(by_file.items(), key=lambda x: -x[1])[:15]:
        print(f"  {who:6} {size / n / 1024:7.1f} KB/trial  {f}")
    print("by line:")
    for (who, site), (size, count) in sorted(by_site.items(), key=lambda x: -x[1][0])[:20]:
        print(f"  {who:6} {size / n / 1024:7.1f} KB/trial {count / n:6.1f} blocks/trial  {site}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        compare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        tracemalloc.start(int(os.environ.get("TRACE_FRAMES", "12")))
        threading.Thread(target=watch, daemon=True, args=(Path(os.environ["TRACE_EXPERIMENT"]),
                         [int(x) for x in os.environ["TRACE_AT"].split(",")], Path(os.environ["TRACE_OUT"]))).start()
        sys.argv = ["tune", *sys.argv[1:]]
        from tune_pipeline.cli import main
        main()
