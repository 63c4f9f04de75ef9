"""The Ray Tune function trainable around `train.fit`: the only place that
calls `tune.report`.  One report per epoch with a full-state checkpoint; a
restarted trial continues from `tune.get_checkpoint()`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from tune_pipeline.augment import ScriptSource
from tune_pipeline.config import validate_config
from tune_pipeline.data import Dataset, dataset_key
from tune_pipeline.errors import RunFailed
from tune_pipeline.compile_policy import COMPILED_KEY, trial_compiles
from tune_pipeline.train import fit, resolve_device
from tune_pipeline.watchdog import TrialStalled, Watchdog, epoch_seconds

STATE_FILE = "state.pt"
COMPILE_CACHE = "compile_cache"


def _use_assigned_cpus() -> None:
    """A reused actor keeps the thread count of whoever ran before; match it to
    this trial's CPU share so packed trials do not oversubscribe the cores."""
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def compile_cache_dir(storage) -> Path:
    """Inductor's on-disk cache (FX graphs, AOTAutograd) for one experiment, so a
    trial loads what an earlier trial of the same graph compiled, in about a
    twentieth of the compile's time (BENCHMARKS.md).  Inductor needs a local
    folder: the experiment's own on local storage, else one per node named after
    the experiment."""
    if storage.storage_filesystem.type_name == "local":
        return Path(storage.experiment_fs_path) / COMPILE_CACHE
    return Path(tempfile.gettempdir()) / "tune_pipeline" / COMPILE_CACHE / storage.experiment_dir_name


def train_trial(config: dict, shared_data: dict | None = None, trials_per_compile: float = 1,
                scripts: dict | None = None) -> None:
    """`shared_data` is {"key": dataset_key, "arrays": Dataset.to_arrays()} put
    in the object store once by the driver; a trial on other data loads its own.
    `trials_per_compile`: how many of the sweep's trials share each cold compile
    of this trial's graph (ray_session.trials_per_compile), which `compile: auto` weighs.
    `scripts`: {name: ScriptSource.record()} of every transform script the
    sweep names, read once by the driver: a trial runs that text, so a node
    needs none of the driver's files."""
    _use_assigned_cpus()
    # Checked by the driver; this node may not have the driver's paths.
    cfg = validate_config(dict(config), source="trial config", check_paths=False)
    name = cfg["runtime_transform_script"]
    script = ScriptSource.from_record(name, scripts[name]) if scripts and name in scripts else None
    dataset = None
    if shared_data is not None and tuple(shared_data["key"]) == dataset_key(cfg):
        dataset = Dataset.from_arrays(shared_data["arrays"])

    resume_state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume_state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)

    # Resolved once, here, and reported with every result: `tune train --from`
    # trains what this trial trained.  A continued trial compiles as it started,
    # whatever the cluster is now.
    started = resume_state["config"].get("compile") if resume_state is not None else None
    cfg["compile"] = trial_compiles(cfg["compile"], resolve_device(cfg["device"]), trials_per_compile, started)
    if cfg["compile"]:  # read by inductor at each compile, so set before fit
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir(tune.get_context().get_storage()))

    def report(metrics: dict, make_state) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(make_state(), Path(folder) / STATE_FILE)
            tune.report({**metrics, "node_id": ray.get_runtime_context().get_node_id(),
                         COMPILED_KEY: cfg["compile"]},
                        checkpoint=tune.Checkpoint.from_directory(folder))

    watchdog = Watchdog(cfg["trial_timeout"], earlier_epochs=epoch_seconds(resume_state))
    try:
        # Stopped by raising in the thread that trains, or abandoned there when
        # stuck in one C call: either way the trial fails here, with its reason,
        # as any other failed trial (Ray then ends this actor).
        watchdog.run(lambda: fit(
            cfg, dataset=dataset, resume_state=resume_state, script=script, on_batch=watchdog.batch_done,
            on_epoch=lambda metrics, make_state: (report(metrics, make_state), watchdog.beat())))
    except TrialStalled as exc:
        raise RunFailed(str(exc)) from None

