"""Disk per trial with each `tune.checkpoints` setting, and Ray's state saves.

    python benchmarks/bench_retention.py --before /work/main [--after .] [--model small_cnn]

One small ASHA sweep (6 learning rates on digits, 4 epochs, cut points at
epochs 1 and 2, the largest learning rate diverging: finished, stopped-early
and failed trials in one run) as `tune search` runs it, once with the
baseline's code and once per setting with ours.  After each: the checkpoint
folders each trial kept and their bytes, by outcome, and how many times Ray
saved the experiment state (forced by CheckpointConfig.num_to_keep, or on
its period and at the end), counted as tests/test_overhead.py counts them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["best", 2, "latest", "none", "all", {"finished": "best", "stopped": "none", "failed": "none"}]
COUNTING_DRIVER = """
import sys
from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
count_file = sys.argv.pop(1)
sync_up = _ExperimentCheckpointManager.sync_up_experiment_state
def counted(self, save_fn, force=False, wait=False):
    def save():
        with open(count_file, "a") as f:
            f.write("forced\\n" if self._should_force_sync_up else "save\\n")
        return save_fn()
    return sync_up(self, save, force=force, wait=wait)
_ExperimentCheckpointManager.sync_up_experiment_state = counted
from tune_pipeline.cli import main
sys.argv[0] = "tune"
main()
"""


def space(folder: Path, model: str, setting) -> Path:
    raw = {"method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
           "parameters": {"dataset": {"value": "digits"}, "model": {"value": model}, "epochs": {"value": 4},
                          "batch_size": {"value": 16}, "max_train_images": {"value": 256},
                          "max_test_images": {"value": 128}, "lr_scheduler": {"value": "none"},
                          "learning_rate": {"values": [0.002, 0.005, 0.01, 0.03, 0.1, 1.0e12]}},
           "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2, "max_iter": 4}}
    if setting is not None:
        raw["tune"] = {"checkpoints": setting}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(tree: Path, model: str, setting, folder: Path, env: dict) -> dict:
    counts = folder / "saves.txt"
    rt = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    done = subprocess.run([sys.executable, "-c", COUNTING_DRIVER, str(counts), "search",
                           str(space(folder, model, setting)), "--name", "e", "--storage-path", str(folder)],
                          capture_output=True, text=True, cwd=folder,
                          env={**env, "PYTHONPATH": str(tree), "RAY_TMPDIR": rt})
    shutil.rmtree(rt, ignore_errors=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{tree} {setting}: exit {done.returncode}\n{done.stderr[-3000:]}")
    out: dict = {"saves": counts.read_text().split(), "by": {}}
    for trial in sorted((folder / "e").glob("trial_*")):
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        status = "failed" if (trial / "error.txt").exists() else "finished" if len(rows) == 4 else "stopped"
        kept = list(trial.glob("checkpoint_*"))
        size = sum(f.stat().st_size for c in kept for f in c.rglob("*") if f.is_file())
        entry = out["by"].setdefault(status, [0, 0, 0])
        entry[0] += 1
        entry[1] += len(kept)
        entry[2] += size
    shutil.rmtree(folder / "e")
    counts.unlink()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--model", default="small_cnn")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_retention_"))
    env = {**os.environ, "HOME": str(folder), "RAY_USAGE_STATS_ENABLED": "0",
           "TUNE_PIPELINE_CACHE": str(folder / "cache")}
    try:
        print(f"{args.model}, 6 trials x 4 epochs (ASHA cuts at 1 and 2; one diverges)")
        print(f"{'code':<7} {'tune.checkpoints':<48} {'finished':>16} {'stopped':>16} {'failed':>14} "
              f"{'MB/trial':>9}  state saves")
        for label, tree, setting in [("before", args.before.resolve(), None),
                                     *[("after", args.after.resolve(), s) for s in SETTINGS]]:
            out = run(tree, args.model, setting, folder, env)
            cells = []
            for status in ("finished", "stopped", "failed"):
                n, kept, size = out["by"].get(status, [0, 0, 0])
                cells.append(f"{n} x {kept / max(n, 1):.1f} kept" if n else "-")
            trials = sum(v[0] for v in out["by"].values())
            total = sum(v[2] for v in out["by"].values())
            saves = out["saves"]
            shown = "(num_to_keep=2)" if setting is None else json.dumps(setting).replace('"', "")
            print(f"{label:<7} {shown:<48} {cells[0]:>16} {cells[1]:>16} {cells[2]:>14} "
                  f"{total / trials / 1e6:9.2f}  {len(saves)} ({saves.count('forced')} forced)", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
