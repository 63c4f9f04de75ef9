"""What a sweep writes and leaves behind, counted rather than timed: the
guard on the machinery's overhead (BENCHMARKS.md, "Where the sweep's time
goes").  A change that checkpoints twice an epoch, snapshots the experiment on
every result, or leaves Ray running after the command ends fails here, on any
machine, however fast."""

import json
import os
import subprocess
import sys

import pytest

from conftest import TINY, write_sweep

pytestmark = pytest.mark.slow

# `tune search` as a user runs it (cli.main, its exit path included) with
# Tune's experiment-state snapshots counted, and those Ray forced (rather
# than took on its period or at the end): no public hook reports them.
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
    assert "experiment:" in done.stdout  # all printed before the command's quick exit (command_process.exit_now)

    trial_dirs = sorted(p for p in (tmp_path / "guard").iterdir() if p.name.startswith("trial_"))
    assert len(trial_dirs) == TRIALS
    for trial_dir in trial_dirs:
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        assert len({row["checkpoint_dir_name"] for row in rows}) == len(rows) == EPOCHS  # one per epoch
        # Kept (tune.checkpoints: best, the default): its best epoch's alone.  Ray's
        # num_to_keep=2 kept the two best and the latest: three where two were meant.
        best = max(rows, key=lambda row: (row["val_accuracy"], row["epoch"]))
        assert [p.name for p in trial_dir.glob("checkpoint_*")] == [best["checkpoint_dir_name"]]

    # Tune saves the whole experiment on its period (>= 10 s) and at the end;
    # with CheckpointConfig(num_to_keep) set it also forced a save every
    # num_to_keep checkpoints of any trial (6 for these 12): none now.
    saves = count_file.read_text().split()
    assert saves and "forced" not in saves, saves

    # The command ends without Python's teardown: Ray must not outlive it, and
    # the exit handlers must still run (wandb's removes its temporary folders).
    assert ray_processes_of(private_ray_tmpdir) == []
    # (torch's compile cache folder is meant to stay: it is a cache.)
    assert [p.name for p in own_tmp.iterdir() if not p.name.startswith("torchinductor_")] == []
