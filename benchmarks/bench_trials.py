"""Per-trial overhead of a sweep: 20 trivial trials through `tune search`
against the same 20 configs trained one after another in this process with
`tune train`'s loop; then the quickstart's wall time.

    python benchmarks/bench_trials.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from common import Timer
from tune_pipeline.config import validate_config
from tune_pipeline.data import load_dataset
from tune_pipeline.train import fit

TRIVIAL = {"dataset": "digits", "model": "small_cnn", "epochs": 1, "batch_size": 64,
           "max_train_images": 64, "max_test_images": 64}
TRIALS = 20


def tune_search(args: list[str], cwd: Path) -> float:
    with Timer() as t:
        done = subprocess.run([sys.executable, "-m", "tune_pipeline", "search", *args], cwd=cwd,
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return t.seconds


def main():
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        space = {"method": "grid", "parameters": {**{k: {"value": v} for k, v in TRIVIAL.items()},
                                                  "seed": {"values": list(range(TRIALS))}}}
        (folder / "trivial.yaml").write_text(yaml.safe_dump(space))

        with Timer() as t:
            data = load_dataset("digits")
            for seed in range(TRIALS):
                fit(validate_config({**TRIVIAL, "seed": seed}), dataset=data)
        in_process = t.seconds

        swept = tune_search(["trivial.yaml", "--storage-path", str(folder), "--name", "trivial"], folder)
        quickstart = tune_search(["quickstart", "--storage-path",
                                  str(folder), "--name", "quickstart"], folder)

    print(f"{TRIALS} trivial trials, one process, tune train's loop : {in_process:6.1f} s "
          f"({in_process / TRIALS:.2f} s/trial)")
    print(f"{TRIALS} trivial trials through tune search (2 at once) : {swept:6.1f} s "
          f"({swept / TRIALS:.2f} s/trial, Ray start included)")
    print(f"overhead of the sweep over the plain loop            : {swept - in_process:6.1f} s "
          f"({(swept - in_process) / TRIALS:+.2f} s/trial)")
    print(f"tune search quickstart (4 trials)                     : {quickstart:6.1f} s")


if __name__ == "__main__":
    main()
