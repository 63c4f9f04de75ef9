"""What a sweep writes and leaves behind, counted rather than timed: the
guard on the machinery's overhead (BENCHMARKS.md, "Where the sweep's time
goes").  A change that checkpoints twice an epoch, snapshots the experiment on
every result, or leaves Ray running after the command ends fails here, on any
machine, however fast."""

import math
import os
import subprocess
import sys

import pytest

from tune_pipeline.sweep import CHECKPOINTS_TO_KEEP

from conftest import TINY, write_sweep

pytestmark = pytest.mark.slow

# `tune search` as a user runs it (cli.main, its exit path included) with
# Tune's experiment-state snapshots counted: no public hook reports them.
COUNTING_DRIVER = """
import sys
from ray.tune.execution.tune_controller import TuneController
count_file = sys.argv.pop(1)
save_to_dir = TuneController.save_to_dir
def counted(self):
    with open(count_file, "a") as f:
        f.write("save\\n")
    return save_to_dir(self)
TuneController.save_to_dir = counted
from tune_pipeline.cli import main
sys.argv[0] = "tune"
main()
"""

TRIALS, EPOCHS = 4, 3


def ray_processes_of(folder: str) -> list[str]:
    """Command lines of the processes of a Ray whose sessions live in `folder`."""
    lines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in lines if folder in line and ("raylet" in line or "gcs_server" in line
                                                          or "default_worker" in line)]


def test_one_checkpoint_per_epoch_few_state_snapshots_and_no_ray_left(tmp_path, private_ray_tmpdir):
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.01, 0.02, 0.05, 0.1]},
                                   "epochs": {"value": EPOCHS}})
    count_file = tmp_path / "state_saves.txt"
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    done = subprocess.run([sys.executable, "-c", COUNTING_DRIVER, str(count_file), "search", str(space),
                           "--name", "guard", "--storage-path", str(tmp_path), *TINY],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(own_tmp)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "experiment:" in done.stdout  # all printed before the command's quick exit (cli._exit)

    trial_dirs = sorted(p for p in (tmp_path / "guard").iterdir() if p.name.startswith("trial_"))
    assert len(trial_dirs) == TRIALS
    for trial_dir in trial_dirs:
        kept = sorted(int(p.name.split("_")[1]) for p in trial_dir.glob("checkpoint_*"))
        # Ray numbers a trial's checkpoints 0, 1, 2...: the last number counts them all.
        assert kept[-1] + 1 == EPOCHS, f"{trial_dir.name}: {kept[-1] + 1} checkpoints for {EPOCHS} epochs"
        assert len(kept) <= CHECKPOINTS_TO_KEEP

    # Tune snapshots the whole experiment when CHECKPOINTS_TO_KEEP checkpoints of
    # a trial have passed since the last snapshot (so that it never points at a
    # deleted checkpoint), when its period (>= 10 s) has passed, and at the end.
    # Measured: 6 for these 12 checkpoints.  One a result would be 12 or more.
    saves = len(count_file.read_text().split())
    assert 1 <= saves <= math.ceil(TRIALS * EPOCHS / CHECKPOINTS_TO_KEEP) + 2, saves

    # The command ends without Python's teardown: Ray must not outlive it, and
    # the exit handlers must still run (wandb's removes its temporary folders).
    assert ray_processes_of(private_ray_tmpdir) == []
    # (torch's compile cache folder is meant to stay: it is a cache.)
    assert [p.name for p in own_tmp.iterdir() if not p.name.startswith("torchinductor_")] == []
