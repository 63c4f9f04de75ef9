"""The Ray Tune function trainable around `train.fit`: the only place that
calls `tune.report`.  One report per epoch with a full-state checkpoint; a
restarted trial continues from `tune.get_checkpoint()`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from tune_pipeline.config import validate_config
from tune_pipeline.data import Dataset, dataset_key
from tune_pipeline.errors import RunFailed
from tune_pipeline.experiment import STALLED_FILE
from tune_pipeline.train import fit
from tune_pipeline.watchdog import TrialStalled, Watchdog

STATE_FILE = "state.pt"


def _use_assigned_cpus() -> None:
    """A reused actor keeps the thread count of whoever ran before; match it to
    this trial's CPU share so packed trials do not oversubscribe the cores."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def train_trial(config: dict, shared_data: dict | None = None) -> None:
    """`shared_data` is {"key": dataset_key, "arrays": Dataset.to_arrays()} put
    in the object store once by the driver; a trial on other data loads its own."""
    _use_assigned_cpus()
    cfg = validate_config(dict(config), source="trial config")
    dataset = None
    if shared_data is not None and tuple(shared_data["key"]) == dataset_key(cfg):
        dataset = Dataset.from_arrays(shared_data["arrays"])

    resume_state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume_state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)

    def report(metrics: dict, make_state) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(make_state(), Path(folder) / STATE_FILE)
            tune.report({**metrics, "node_id": ray.get_runtime_context().get_node_id()},
                        checkpoint=tune.Checkpoint.from_directory(folder))

    with Watchdog(cfg["trial_timeout"], on_give_up=_record_stall) as watchdog:
        try:
            fit(cfg, dataset=dataset, resume_state=resume_state,
                on_epoch=lambda metrics, make_state: (report(metrics, make_state), watchdog.beat()))
        except TrialStalled as exc:
            raise RunFailed(str(exc)) from None


def _record_stall(reason: str) -> None:
    """Before the watchdog ends a stuck actor: its reason where `tune status`
    reads it, the trial's folder in the experiment's storage (local or s3://).
    Not get_trial_dir(): that is the actor's staging folder, which a reused
    actor never syncs back."""
    storage = tune.get_context().get_storage()  # DeveloperAPI; Ray is pinned in pyproject
    with storage.storage_filesystem.open_output_stream(f"{storage.trial_fs_path}/{STALLED_FILE}") as out:
        out.write((reason + "\n").encode())
