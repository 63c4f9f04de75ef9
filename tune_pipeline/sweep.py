"""Building, running and restoring a Ray Tune experiment from a SearchSpace.

The driver loads the dataset once and puts it in the object store, starts
(or attaches to) Ray, runs the Tuner with a live table instead of Ray's log,
and writes `tune_pipeline.json` beside Ray's state so `tune resume`,
`tune export` and `tune status` know what the experiment was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tune_pipeline import retention
from tune_pipeline.experiment import (FAILED, INTERRUPTED_STATE, METADATA_FILE, NEVER_STARTED, PENDING_STATE,
                                      REPLACED_KEY, Trial, load_experiment, ray_state_saved, read_metadata)
from tune_pipeline.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunFailed, UserError
from tune_pipeline.cluster import join_problem, native_output_captured, own_head, prepare_join
from tune_pipeline.lock import ExperimentLock
from tune_pipeline.early_stopping import with_scheduler
from tune_pipeline.space import REPEAT_KEY, SearchSpace, parse_space
from tune_pipeline.tune_adapter import check_tune, to_tune
from tune_pipeline.storage import location, remove_tree

# On remote storage Ray stages the experiment state locally and uploads it at
# most every sync period (default 300 s).  After a SIGKILL the bucket then held
# a searcher state that disagreed with the trial list, and `tune resume` waited
# forever for a trial that would never come.  Uploading at each state save
# (Ray saves every >= 10 s) keeps the bucket as current as a local folder.
REMOTE_SYNC_SECONDS = 0
# tune_pipeline.json's "resume_format": 2 marks experiments whose random draws
# Ray saves with its search state (tune_adapter._wandb_draw) and whose bayes searcher
# takes back rerun trials (searcher.py).  Older ones cannot be resumed safely.
RESUME_FORMAT = 2


@dataclass
class SweepOptions:
    name: str | None = None
    storage_path: str | Path = "ray_results"  # a folder, or s3://... on a cluster
    address: str | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    wandb: bool = False
    wandb_project: str | None = None
    verbose: bool = False
    overrides: tuple[str, ...] = ()


@dataclass
class SweepOutcome:
    experiment_dir: Path
    counts: dict[str, int]
    best: Trial | None
    interrupted: bool

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.counts.get(FAILED) else EXIT_OK


def experiment_name(space: SearchSpace, name: str | None) -> str:
    if name:
        return name
    stem = space.name or space.source.stem
    return f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"


def resolve_storage(storage_path: str | Path) -> str:
    return str(location(storage_path))


def _quiet_ray_env(verbose: bool) -> None:
    # Read by Ray when it starts: keep its banners and dedup notices off the terminal.
    # The old console engine honours verbose=0; the new one prints its banner regardless.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    if not verbose:
        # A failed trial's result that no one fetched is printed with its whole
        # traceback when Ray shuts down; Tune has recorded the failure already.
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")


def init_ray(address: str | None, verbose: bool, console=None):
    import ray

    _quiet_ray_env(verbose)
    if ray.is_initialized():
        return ray
    if address and address.startswith("ray://"):
        # Under Ray Client the Tuner would run on the cluster while our driver
        # (live table, lock, data loading) runs here; Ray Tune recommends a job.
        raise UserError(f"--address {address}: Ray Client (ray://) is not supported; run `tune search` "
                        f"on the cluster (ssh to the head, or `ray job submit -- tune search ...`) "
                        f"with --address auto")
    kwargs = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR,
                  configure_logging=True)
    # ray.init replaces the SIGTERM handler with one that exits at once (code 15,
    # nothing saved); a handler of the command's own (cli.main: SIGTERM acts
    # as Ctrl-C) is put back.
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        _start_or_join(ray, address, kwargs, console)
    finally:
        if callable(on_sigterm):
            signal.signal(signal.SIGTERM, on_sigterm)
    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def _start_or_join(ray, address: str | None, kwargs: dict, console) -> None:
    if address == "auto" and not os.environ.get("RAY_ADDRESS"):
        # This user's head on this machine, never Ray's own lookup (it adopts any user's).
        head, what = own_head()
        if head is None:
            raise UserError("--address auto: no Ray head of yours runs on this machine; start one with "
                            "`tune dashboard` or `ray start --head`, or leave out --address")
        _join(ray, head, kwargs, what)
    elif address or os.environ.get("RAY_ADDRESS"):  # the user's choice (RAY_ADDRESS as every Ray program reads it)
        _join(ray, address, kwargs, f"--address {address}" if address else "RAY_ADDRESS")
    else:
        head, what = own_head()
        if head is not None:
            _join(ray, head, kwargs, what)  # a `tune dashboard` head: the sweep shows in its dashboard
        else:
            if what and console is not None:
                console.note(what)
            # A local Ray sized to this machine; the dashboard is `tune dashboard`'s job.
            token_without_home()
            ray.init(address="local", include_dashboard=False, **kwargs)


def token_without_home() -> None:
    """Ray turns on token authentication for a new local Ray and saves the
    token in ~/.ray/auth_token: with a read-only HOME, a traceback.  Then the
    token lives in this process's environment instead (Ray reads
    RAY_AUTH_TOKEN; its workers inherit it) and HOME is left alone."""
    if (os.environ.get("RAY_AUTH_MODE", "token").lower() != "token"
            or os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        return
    folder = Path.home() / ".ray"
    if (folder / "auth_token").exists():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tune-write-probe-"):
            pass
    except OSError:
        import secrets

        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


JOIN_PROBE_SECONDS = 5.0  # a head that does not connect, or answer, in this long is not there


def _address_to_probe(address: str | None) -> str | None:
    """The host:port `ray.init(address)` will try, as Ray picks it: RAY_ADDRESS
    for none or "auto", then this user's head on this machine."""
    chosen = address if address not in (None, "auto") else os.environ.get("RAY_ADDRESS")
    if chosen in (None, "", "auto"):
        return own_head()[0]
    return None if chosen == "local" else chosen


def check_head_answers(address: str | None, what: str) -> None:
    """Ray retries a head that is gone for minutes (forever, with `--address`),
    printing its C++ warnings every 30 s.  A TCP connection, then Ray's own
    handshake, each bounded by JOIN_PROBE_SECONDS, make that one line within
    seconds (the handshake's warnings go where the caller sends fd 2)."""
    target = _address_to_probe(address)
    if not target:
        return  # Ray says itself, at once, that it found no head
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return  # Ray's own words for an address it cannot read
    try:
        with socket.create_connection((host, int(port)), timeout=JOIN_PROBE_SECONDS):
            pass
        reason = None
    except OSError as exc:
        reason = "no answer in {:g} s".format(JOIN_PROBE_SECONDS) if isinstance(exc, TimeoutError) \
            else (exc.strerror or str(exc))
    if reason is None:
        # Something accepts connections there: ask it as Ray does, but with a
        # time limit (a silent listener held ray.init for good).
        from ray._raylet import InnerGcsClient  # no public API; Ray is pinned in pyproject

        try:
            InnerGcsClient.standalone(target, None, int(JOIN_PROBE_SECONDS * 1000))
            return
        except Exception as exc:  # noqa: BLE001 - only a timeout is ours to name; Ray words the rest
            if "Timed out" not in str(exc):
                return
        reason = f"it takes connections but does not answer as a Ray head in {JOIN_PROBE_SECONDS:g} s"
    raise UserError(f"{what}: no Ray head answers at {target} ({reason}); start one with `tune dashboard` "
                    f"or `ray start --head`, or leave out the address to run on a private local Ray")


def _join(ray, address: str | None, kwargs: dict, what: str) -> None:
    prepare_join(address)  # a loopback head stays on loopback; this user's head gets their token
    try:
        # Ray's C++ lines (its retries, refusals, the probe's handshake): one line of ours instead.
        with native_output_captured() as native:
            check_head_answers(address, what)
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"{what}: cannot join the Ray cluster: {join_problem(exc, native)}") from None


def fit_resources(ray, resources: dict, console) -> dict:
    """A GPU share on a cluster without GPUs would leave every trial pending forever."""
    if resources.get("gpu") and not ray.cluster_resources().get("GPU", 0):
        console.note(f"no GPU in this Ray cluster: ignoring the {resources['gpu']:g} GPU share per trial")
        resources = {**resources, "gpu": 0.0}
    return resources


def shared_dataset(space: SearchSpace, console=None) -> dict | None:
    """The dataset decoded once here, for every trial through the object store,
    when all trials train on the same data.  Loading it before Ray starts also
    makes a missing dataset a one-line error rather than a trial failure.  The
    validation split is made here too, so every trial holds out the same images."""
    from tune_pipeline.data import DATA_KEYS, dataset_key, load_for_config  # torch: not for a dry run

    if any(k in space.params for k in DATA_KEYS):
        return None  # trials differ in their data: each loads its own
    fixed = space.fixed
    where = "" if fixed["dataset"] == "digits" else f" from {fixed['data_dir']}"
    with console.phase(f"reading dataset {fixed['dataset']}{where}") if console else contextlib.nullcontext() as step:
        data = load_for_config(fixed)
        if step is not None:
            images = sum(len(t) for t in (data.train_labels, data.test_labels, data.val_labels) if t is not None)
            cache = {True: " (from the cache)", False: " (decoded; cached for the next sweep)"}.get(
                data.extra.get("cache_hit"), "")
            step.detail = f"{images:,} images{cache}"
        return {"key": dataset_key(fixed), "arrays": data.to_arrays()}


def concurrent_trials(ray, resources: dict, max_concurrent: int | None) -> int:
    """How many trials run at once: what every alive node holds of one trial's
    resources, summed, capped by max_concurrent_trials."""
    slots = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fits = [have.get("CPU", 0.0) // resources["cpu"]]
        if resources.get("gpu"):
            fits.append(have.get("GPU", 0.0) // resources["gpu"])
        slots += int(min(fits))
    slots = max(1, slots)
    return min(slots, max_concurrent) if max_concurrent else slots


def trials_per_compile(space: SearchSpace, ray, resources: dict, max_concurrent: int | None) -> float:
    """How many trials share each cold compile of one graph: trials that start
    together each compile cold; later ones find the graphs in the cache."""
    return space.trials_per_graph() / concurrent_trials(ray, resources, max_concurrent)


def read_scripts(space: SearchSpace) -> dict:
    """{name: record} of every transform script the space names, each read
    once, here: the text (and its hash) goes into the experiment's record and
    to every trial through the object store, as the dataset does.  The text
    read is checked again, so what trials run is what was checked."""
    from tune_pipeline.augment import (IMPORT_TIMEOUT_S, TransformScriptError, load_transform_script,
                                       read_transform_script)

    key = "runtime_transform_script"
    names = space.params[key].values if key in space.params else [space.fixed[key]]
    scripts = {}
    for name in dict.fromkeys(names):
        try:
            source = read_transform_script(name)
            load_transform_script(name, IMPORT_TIMEOUT_S, source=source)
        except TransformScriptError as exc:  # changed since the space was checked
            raise UserError(f"{space.source}: runtime_transform_script: {exc}") from None
        scripts[name] = source.record()
    return scripts


def recorded_scripts(meta: dict, space: SearchSpace, console) -> dict:
    """The scripts a resumed sweep runs: the text recorded when it started,
    whatever the files hold now (a changed one is noted).  An experiment from
    before the record reads them now."""
    from tune_pipeline.augment import TransformScriptError, read_transform_script

    recorded = meta.get("transform_scripts")
    if not recorded:
        return read_scripts(space)
    for name, record in recorded.items():
        try:
            now = read_transform_script(name).record()["sha256"]
        except TransformScriptError:
            continue  # moved or gone: the recorded text runs all the same
        if now != record["sha256"]:
            console.note(f"transform script {name} has changed since the sweep started; its trials "
                         f"run the recorded version (sha256 {record['sha256'][:12]}, in {METADATA_FILE})")
    return recorded


def build_trainable(shared: dict | None, resources: dict, per_compile: float, scripts: dict | None = None):
    """The wrapped trainable; `Tuner.restore` needs the same one again."""
    from ray import tune

    from tune_pipeline.trainable import train_trial

    return tune.with_resources(tune.with_parameters(
        train_trial, shared_data=shared, trials_per_compile=per_compile, scripts=scripts), resources)


def build_callbacks(meta: dict, name: str, console):
    from tune_pipeline.live_table import LiveTable

    callbacks = [LiveTable(meta["swept"], meta["metric"], meta["mode"], console, meta["trial_count"]),
                 # PBT's trials copy each other's checkpoints from an interval back: none go early.
                 retention.pruner(meta["checkpoints"], while_running=meta.get("scheduler", {}).get("type") != "pbt")]
    if meta.get("wandb") and wandb_environment(console) != "disabled":
        callbacks.append(wandb_callback(meta.get("wandb_project") or "tune_pipeline", group=name))
    if "://" in str(meta.get("storage_path", "")):
        callbacks.append(storage_watch(str(location(meta["storage_path"]) / name)))
    return callbacks


class StorageLost(RunFailed):
    """The experiment's storage (a bucket) stopped answering mid-sweep."""


def storage_lost(uri, reason: str) -> StorageLost:
    return StorageLost(
        f"the sweep stopped: its storage does not answer ({reason}); the trials' state and checkpoints "
        f"are as last uploaded to {uri}; once it answers, continue with `tune resume {uri}` (it takes "
        f"over this driver's driver.lock if it is still there)")


def storage_watch(uri: str):
    """A Ray callback: when a trial fails, is the bucket still there?  Once it
    is gone every trial fails in turn (each checks the bucket as it starts),
    and each failure is recorded as the trial's own; the first one stops the
    sweep instead, with one line."""
    from ray import tune

    class StorageWatch(tune.Callback):
        def __init__(self, uri: str):
            self.uri = uri

        def on_trial_error(self, iteration, trials, trial, **info):
            try:
                location(self.uri).exists()
            except UserError as exc:
                reason = exc.one_line().split("cannot reach this storage (", 1)[-1].split("); check", 1)[0]
                raise storage_lost(self.uri, reason) from None

    return StorageWatch(uri)


def wandb_callback(project: str, group: str):
    """Ray's WandbLoggerCallback in the mode `wandb_environment` chose."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    class WandbLogger(WandbLoggerCallback):
        """Reads the mode when the sweep starts, not when it was built: a
        resumed sweep (Ray unpickles this callback) logs as its own driver
        decided, offline where the network has gone, nothing when disabled."""

        def setup(self, *args, **kwargs):
            self.kwargs["mode"] = os.environ.get("WANDB_MODE", "offline")
            if self.kwargs["mode"] != "disabled":
                super().setup(*args, **kwargs)

        def log_trial_start(self, trial):
            if self.kwargs.get("mode") != "disabled":
                super().log_trial_start(trial)

        def log_trial_result(self, iteration, trial, result):
            if self.kwargs.get("mode") != "disabled":
                super().log_trial_result(iteration, trial, result)

        def log_trial_end(self, trial, failed=False):
            if trial in self._trial_queues:
                super().log_trial_end(trial, failed)

        def on_experiment_end(self, trials, **info):
            if self._trial_logging_futures:
                super().on_experiment_end(trials, **info)

    return WandbLogger(project=project, group=group, log_config=True,
                       mode=os.environ.get("WANDB_MODE", "offline"))


WANDB_PROBE_SECONDS = 5.0  # wandb itself waits 90 s before giving up on its server
WANDB_SERVER = "https://api.wandb.ai"


def wandb_environment(console=None) -> str:
    """How this driver's trials log to wandb, decided once, before any trial,
    and set in WANDB_MODE: `disabled` when the user says so (nothing is
    written), `offline` without an API key or when wandb's server does not
    answer within WANDB_PROBE_SECONDS (the runs are kept on disk for `wandb
    sync`), else `online`.  Never a prompt, never a 90-second wait."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "dryrun":  # wandb's old word for offline
        mode = "offline"
    if mode not in ("disabled", "offline"):
        have_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = "online"
        if not have_key:
            mode = "offline"
        else:
            server = os.environ.get("WANDB_BASE_URL") or WANDB_SERVER
            problem = _unreachable(server, WANDB_PROBE_SECONDS)
            if problem:
                mode = "offline"
                if console is not None:
                    console.note(f"wandb: {server} does not answer ({problem}): logging offline; the runs are "
                                 f"kept in each trial's folder for `wandb sync`")
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    return mode


def _unreachable(url: str, seconds: float) -> str | None:
    """Why `url` gives no HTTP answer within `seconds` (any status is an
    answer), or None.  In a thread, so a resolver that hangs is bounded too."""
    import threading
    import urllib.error
    import urllib.request

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(url, timeout=seconds).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered
        except Exception as exc:  # noqa: BLE001 - every failure means: not reachable
            reason = getattr(exc, "reason", exc)
            outcome.append(getattr(reason, "strerror", None) or str(reason) or type(reason).__name__)

    thread = threading.Thread(target=probe, daemon=True, name="wandb-probe")
    thread.start()
    thread.join(seconds + 1)
    return outcome[0] if outcome else f"no answer in {seconds:g} s"


def _netrc_has_wandb() -> bool:
    import netrc
    try:
        return any("wandb" in host for host in netrc.netrc().hosts)
    except (OSError, netrc.NetrcParseError):
        return False


def trial_dirname(trial) -> str:
    # Ray's default name strings every swept value together; paths make it unreadable.
    return f"trial_{trial.trial_id}"


def target_stopper(metric: str, mode: str, target: float):
    """wandb's metric.target: once any trial reaches it, the sweep stops (here
    the running trials stop too; wandb lets them finish)."""
    from ray.tune.stopper import Stopper

    class TargetReached(Stopper):
        def __init__(self):
            self.reached = False

        def __call__(self, trial_id, result) -> bool:
            value = result.get(metric)
            if isinstance(value, (int, float)) and (value >= target if mode == "max" else value <= target):
                self.reached = True
            return False

        def stop_all(self) -> bool:
            return self.reached

    return TargetReached()


def _run_config(name: str, storage: str, meta: dict, callbacks):
    from ray import tune

    stop = (target_stopper(meta["metric"], meta["mode"], meta["target"])
            if meta.get("target") is not None else None)
    return tune.RunConfig(
        name=name, storage_path=storage, callbacks=callbacks, verbose=0, stop=stop,
        sync_config=tune.SyncConfig(sync_period=REMOTE_SYNC_SECONDS),
        checkpoint_config=retention.checkpoint_config(meta["metric"], meta["mode"]),
        # A trial that fails is recorded with its reason; the others go on.
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False))


MIN_FREE_BYTES = 64 << 20  # below this a sweep's first checkpoints fill the disk mid-run


def check_resources(resources: dict, where: str = "resources") -> None:
    """Finite shares: a NaN CPU count passes every `>` test and leaves trials pending forever."""
    problems = []
    for key, value in resources.items():
        least = "> 0" if key == "cpu" else ">= 0"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (value <= 0 if key == "cpu" else value < 0):
            problems.append(f"{where}.{key}: must be a finite number {least}, got {value!r}")
    if problems:
        raise UserError(problems)


RAY_GRID_STATE_LIMIT = 1_000_000  # ray.tune.search.basic_variant.SERIALIZATION_THRESHOLD


def resume_warning(space: SearchSpace) -> str | None:
    """Ray Tune keeps no resumable state for a grid past its threshold (it
    only warns in its own log); say so before the user counts on `tune resume`."""
    if space.method != "grid":
        return None
    points = space.trial_count() // max(1, space.num_samples or 1)
    if points <= RAY_GRID_STATE_LIMIT:
        return None
    return (f"{points:,} grid points: past Ray Tune's {RAY_GRID_STATE_LIMIT:,} it saves no search "
            f"state, so this sweep cannot be resumed after an interruption")


def check_name(name: str) -> None:
    """An experiment name is one folder inside the storage path, never a path."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or name != name.strip()):
        raise UserError(f"--name: {name!r} must be a plain folder name (no '/', not '.' or '..')")


def check_storage(storage: str, option: str = "--storage-path") -> None:
    """A local storage path that can hold an experiment: a folder (or one that
    can be made) where a file can be written, with free space left."""
    if "://" in storage:  # what Ray does first, but here as one line, before Ray starts
        probe = location(storage) / f".tune-write-probe-{os.getpid()}"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"{option}: cannot write to {storage} ({str(exc).splitlines()[0]})") from None
        return
    path = Path(storage)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".tune-write-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{option}: cannot write in {existing} ({exc.strerror or exc})") from None
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"{option}: {existing} has {free / 2**20:.1f} MiB free; a sweep needs "
                        f"at least {MIN_FREE_BYTES >> 20} MiB for its checkpoints")


def largest_node(ray) -> dict:
    """CPU and GPU of the largest alive node: a trial runs on one node, so the
    cluster's total says nothing about whether it fits."""
    sizes = [(node.get("Resources", {}).get("CPU", 0.0), node.get("Resources", {}).get("GPU", 0.0))
             for node in ray.nodes() if node.get("Alive")]
    return {"cpu": max((c for c, _ in sizes), default=0.0), "gpu": max((g for _, g in sizes), default=0.0)}


def check_fits_cluster(ray, resources: dict) -> None:
    """After Ray is up and before any folder is made: a trial larger than every
    node would stay pending forever."""
    largest = largest_node(ray)
    problems = []
    for key, label in (("cpu", "CPUs"), ("gpu", "GPUs")):
        if resources.get(key, 0) > largest[key]:
            problems.append(f"a trial needs {resources[key]:g} {label}; the largest node has {largest[key]:g} "
                            f"(lower resources.{key} or --{key}s-per-trial)")
    if problems:
        raise UserError(problems)


def create_experiment_dir(storage: str, name: str):
    """The experiment folder, made atomically: of two sweeps given one --name
    at the same moment, one gets it and the other a one-line error.  (Object
    storage has no atomic create: there the driver lock is what decides.)"""
    parent = location(storage)
    path = parent / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        raise UserError(f"experiment {path} already exists; continue it with "
                        f"`tune resume {path}` or pick another --name") from None
    except OSError as exc:
        raise UserError(f"--storage-path: cannot create {path} ({exc.strerror or exc})") from None
    return path


def write_metadata(experiment_dir, meta: dict) -> None:
    """Atomically: readers of a live experiment never see half of it (an
    object store's writes are whole objects already)."""
    text = json.dumps(meta, indent=2, default=str) + "\n"
    try:
        if not isinstance(experiment_dir, Path):
            (experiment_dir / METADATA_FILE).write_text(text)
            return
        tmp = experiment_dir / f".{METADATA_FILE}.tmp{os.getpid()}"
        tmp.write_text(text)
        tmp.replace(experiment_dir / METADATA_FILE)
    except OSError as exc:
        raise UserError(f"{experiment_dir}: cannot write {METADATA_FILE} ({exc.strerror or exc})") from None


def run_sweep(space: SearchSpace, options: SweepOptions, console) -> SweepOutcome:
    from tune_pipeline.data import dataset_key

    check_tune(space)  # what Ray or Optuna would refuse, refused before anything exists
    name = experiment_name(space, options.name)
    check_name(name)
    storage = resolve_storage(options.storage_path)
    check_storage(storage)
    experiment_dir = location(storage) / name
    if experiment_dir.exists():
        raise UserError(f"experiment {experiment_dir} already exists; continue it with "
                        f"`tune resume {experiment_dir}` or pick another --name")

    resources = dict(space.resources)
    if options.cpus_per_trial is not None:
        resources["cpu"] = options.cpus_per_trial
    if options.gpus_per_trial is not None:
        resources["gpu"] = options.gpus_per_trial
    check_resources(resources)
    max_concurrent = options.max_concurrent or space.max_concurrent_trials
    # Before Ray starts: the trials at once are this machine's (a cluster's differ only in the small term).
    running = retention.local_running(space, resources, max_concurrent)
    retention.check_disk(retention.estimate(space, running), storage, console.note)

    shared = shared_dataset(space, console)
    scripts = read_scripts(space)
    with console.phase("starting Ray", seconds=0):  # never quick: said at once
        ray = init_ray(options.address, options.verbose, console)
    resources = fit_resources(ray, resources, console)
    check_fits_cluster(ray, resources)
    trainable = build_trainable(shared, resources, trials_per_compile(space, ray, resources, max_concurrent),
                                scripts)
    del shared  # in the object store now: the driver's own copy goes (CIFAR-10: 184 MB)

    meta = {
        "name": name, "storage_path": storage, "space_file": str(space.source), "space": space.raw,
        # Every path absolute, every default filled: `tune resume` works from any folder.
        "resolved_space": space.resolved(), "dataset_key": list(dataset_key(space.fixed)),
        "overrides": list(options.overrides), "method": space.method, "metric": space.metric,
        "mode": space.mode, "target": space.target, "swept": space.swept(),
        "repeats": space.repeats, "repeat_key": REPEAT_KEY if space.repeats > 1 else None,
        "scheduler": space.scheduler,
        "resources": resources, "max_concurrent_trials": max_concurrent,
        "num_samples": space.num_samples, "trial_count": space.trial_count(),
        "checkpoints": dict(space.checkpoints),
        "wandb": options.wandb, "wandb_project": options.wandb_project or space.project,
        "created": datetime.now().isoformat(timespec="seconds"), "resume_format": RESUME_FORMAT,
        "transform_scripts": scripts,  # {name: origin, sha256, source}: what every trial runs
    }
    experiment_dir = create_experiment_dir(storage, name)
    lock = ExperimentLock(experiment_dir, "tune search")
    try:
        lock.acquire()
    except BaseException:
        # A local folder was made atomically above: ours to remove.  On object
        # storage a refused lock means another driver's folder: leave it.
        if isinstance(experiment_dir, Path):
            remove_tree(experiment_dir)
        raise
    try:
        write_metadata(experiment_dir, meta)
        tuner = new_tuner(space, meta, trainable, name, storage, console)
    except BaseException:
        lock.release()
        remove_tree(experiment_dir)  # a start that failed leaves nothing behind
        raise
    try:
        console.start(name, experiment_dir, space.trial_count(), resources)
        return _finish(tuner, experiment_dir, meta, console, options.verbose)
    finally:
        lock.release()


def new_tuner(space: SearchSpace, meta: dict, trainable, name: str, storage: str, console):
    """The Tuner of a sweep that starts now (`tune search`, or `tune resume` of
    one that never started)."""
    from ray import tune

    parts = to_tune(space, meta.get("max_concurrent_trials"))
    return tune.Tuner(
        trainable, param_space=parts["param_space"],
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, search_alg=parts["search_alg"],
            scheduler=parts["scheduler"], num_samples=parts["num_samples"],
            max_concurrent_trials=parts["max_concurrent_trials"],
            trial_dirname_creator=trial_dirname,
            reuse_actors=True),  # measured: 20 trivial trials 33 s fresh, 5 s reused
        run_config=_run_config(name, storage, meta, build_callbacks(meta, name, console)))


def resume_sweep(experiment_dir, *, restart_errored: bool, address: str | None,
                 verbose: bool, console, more: int = 0) -> SweepOutcome:
    """Continue an experiment; with `more`, add that many trials (grid: repeats) first (extend.py)."""
    experiment_dir = location(experiment_dir)
    meta = read_metadata(experiment_dir)
    check_resumable(meta, experiment_dir)
    # The lock first: a driver still starting has not written Ray's state yet.
    with ExperimentLock(experiment_dir, "tune resume --more" if more else "tune resume"):
        check_storage(str(experiment_dir), "experiment folder")
        started = ray_state_saved(experiment_dir)
        if started:
            check_resume_format(experiment_dir, meta, restart_errored)
        if more:
            from tune_pipeline.extend import add_trials

            if not started:
                raise UserError(f"--more: {experiment_dir} never started; `tune resume {experiment_dir}` "
                                f"starts it, then --more can add to it")
            meta = add_trials(experiment_dir, meta, load_space_from_meta(meta), more)
            write_metadata(experiment_dir, meta)
            console.note(f"added {meta['added'][-1]['what']}: {meta['trial_count']} trials in all")
        return _resume_locked(experiment_dir, meta, started, restart_errored, address, verbose, console)


def check_resume_format(experiment_dir, meta: dict, restart_errored: bool) -> None:
    """Refuse what Ray would resume wrongly: experiments made before their
    search state held everything a resume needs (RESUME_FORMAT)."""
    if (meta.get("resume_format") or 1) >= RESUME_FORMAT:
        return
    space = meta.get("resolved_space") or {}
    drawn = [k for k, v in (space.get("parameters") or {}).items()
             if isinstance(v, dict) and "distribution" in v and v["distribution"] != "categorical"]
    if meta.get("method") == "random" and drawn:
        raise UserError(f"{experiment_dir}: this random search was started by an older tune_pipeline, "
                        f"whose draws of {', '.join(drawn)} Ray cannot restore (its remaining trials would "
                        f"get placeholders instead of values); its trials so far stay readable (tune export "
                        f"{experiment_dir}); start the rest as a new sweep")
    if meta.get("method") == "bayes" and restart_errored:
        raise UserError(f"{experiment_dir}: this bayes search was started by an older tune_pipeline, whose "
                        f"searcher cannot take back rerun trials; resume it without --restart-errored")


def _clear_unstarted(experiment_dir) -> None:
    """What Ray wrote of a sweep that never started (tuner.pkl, its searcher's
    first state, empty trial folders), so it starts clean: ours stays."""
    from tune_pipeline.lock import LOCK_FILE
    from tune_pipeline.progress import LOG_FILE

    for entry in list(experiment_dir.iterdir()):
        if entry.name in (METADATA_FILE, LOG_FILE) or entry.name.startswith(LOCK_FILE):
            continue
        if entry.is_dir():
            remove_tree(entry)
        else:
            entry.unlink()


def _resume_locked(experiment_dir: Path, meta: dict, started: bool, restart_errored: bool,
                   address: str | None, verbose: bool, console) -> SweepOutcome:
    from ray import tune

    space = load_space_from_meta(meta)
    shared = shared_dataset(space, console)
    scripts = recorded_scripts(meta, space, console)
    with console.phase("starting Ray", seconds=0):  # never quick: said at once
        ray = init_ray(address, verbose, console)
    resources = fit_resources(ray, dict(meta["resources"]), console)
    check_fits_cluster(ray, resources)
    trainable = build_trainable(shared, resources, trials_per_compile(
        space, ray, resources, meta.get("max_concurrent_trials")), scripts)
    del shared  # in the object store now
    if meta.get("wandb"):
        wandb_environment(console)  # the restored callback logs in the mode chosen now
    if not started:
        # Started from its recorded space rather than refused: the user asked
        # for this sweep, its folder and name are taken, and nothing of it ran.
        console.note(f"{experiment_dir}: {NEVER_STARTED.split(';')[0]}: starting it now")
        _clear_unstarted(experiment_dir)
        tuner = new_tuner(space, meta, trainable, experiment_dir.name, str(experiment_dir.parent), console)
        console.start(meta["name"], experiment_dir, meta["trial_count"], resources)
        return _finish(tuner, experiment_dir, meta, console, verbose)
    if restart_errored:
        # Ray reruns them under new ids; their old folders stay, with the error.
        failed = [t.trial_id for t in load_experiment(experiment_dir).failed_trials()]
        if failed:
            meta = {**meta, REPLACED_KEY: sorted({*(meta.get(REPLACED_KEY) or ()), *failed})}
            write_metadata(experiment_dir, meta)
    # Ray restores the run config it pickled, callbacks included; our live
    # table reattaches itself to this terminal when unpickled (live_table.py).
    # No param_space unless trials were added: every value the search draws is
    # saved with it (RESUME_FORMAT).
    from tune_pipeline.extend import continue_search, restore_arguments

    tuner = tune.Tuner.restore(
        str(experiment_dir), trainable, resume_unfinished=True,
        resume_errored=False, restart_errored=restart_errored, **restore_arguments(space, meta))
    continue_search(tuner, space, meta, experiment_dir)  # trials added by --more, still to create
    console.start(meta["name"], experiment_dir, meta["trial_count"], resources, resumed=True)
    return _finish(tuner, experiment_dir, meta, console, verbose)


# What `tune resume` reads of tune_pipeline.json, with the kind of each value.
RESUME_KEYS = {"name": str, "space_file": str, "metric": str, "mode": str, "resources": dict,
               "trial_count": int}


def check_resumable(meta: dict, experiment_dir) -> None:
    """A tune_pipeline.json edited or cut by hand is one line naming the keys, not a KeyError."""
    needed = dict(RESUME_KEYS)
    needed.update({"resolved_space": dict} if "resolved_space" in meta else {"space": dict, "scheduler": dict})
    missing = [key for key in needed if key not in meta]
    wrong = [f"{key} (not a {kind.__name__})" for key, kind in needed.items()
             if key in meta and not isinstance(meta[key], kind)]
    if missing or wrong:
        parts = ([f"no {', '.join(missing)}"] if missing else []) + ([f"bad {', '.join(wrong)}"] if wrong else [])
        raise UserError(f"{experiment_dir / METADATA_FILE}: {'; '.join(parts)}: `tune search` wrote it whole, "
                        f"so it was edited or damaged since; cannot resume without it")


def load_space_from_meta(meta: dict) -> SearchSpace:
    """The search space as it was when the sweep started (the file may have
    changed since, and the working directory too: its paths were stored absolute)."""
    if "resolved_space" in meta:
        # Scripts run from the recorded text (recorded_scripts), wherever the files are now.
        return parse_space(meta["resolved_space"], Path(meta["space_file"]),
                           check_paths="transform_scripts" not in meta)
    # Experiments from before the resolved space was stored: their Tune settings were top-level.
    raw = {"method": "grid", **meta["space"]}
    raw["tune"] = {k: raw.pop(k) for k in ("resources", "max_concurrent_trials", "num_samples", "scheduler")
                   if k in raw}
    space = parse_space(raw, Path(meta["space_file"]), meta.get("overrides", []))
    space.num_samples = meta.get("num_samples", space.num_samples)
    return with_scheduler(space, meta["scheduler"]["type"])


class Unschedulable(RunFailed):
    """Ray found no node for any pending trial (a node left mid-sweep)."""


class _UnschedulableHandler(logging.Handler):
    """Ray Tune only logs a warning when no pending trial fits the cluster and
    then waits forever; raising from the log call stops the sweep with one line."""

    def __init__(self, resources: dict):
        super().__init__(logging.WARNING)
        self.resources = resources

    def emit(self, record: logging.LogRecord) -> None:
        if "cluster not having enough resources" not in record.getMessage():
            return
        import ray

        largest = largest_node(ray) if ray.is_initialized() else {"cpu": 0.0, "gpu": 0.0}
        raise Unschedulable(
            f"no trial can be scheduled: a trial needs {self.resources.get('cpu', 0):g} CPUs and "
            f"{self.resources.get('gpu', 0):g} GPUs; the largest node now has {largest['cpu']:g} CPUs "
            f"and {largest['gpu']:g} GPUs (did a node leave?)")


RAY_RESOURCE_LOGGER = "ray.tune.execution.insufficient_resources_manager"


@contextlib.contextmanager
def unschedulable_is_an_error(resources: dict):
    logger = logging.getLogger(RAY_RESOURCE_LOGGER)
    handler = _UnschedulableHandler(resources)
    saved = logger.level, logger.propagate
    logger.setLevel(logging.WARNING)  # ray.tune is set to ERROR when not verbose
    logger.propagate = False  # our line replaces Ray's paragraph
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _finish(tuner, experiment_dir, meta: dict, console, verbose: bool = False) -> SweepOutcome:
    started = time.perf_counter()
    interrupted = False
    from ray.tune import TuneError

    from tune_pipeline.progress import LOG_FILE, quiet_terminal

    local = isinstance(experiment_dir, Path)
    try:
        # Remote storage (s3://...) has no local folder: Ray's lines go to a local temp file.
        log_file = experiment_dir / LOG_FILE if local else Path(tempfile.gettempdir()) / f"{meta['name']}-{LOG_FILE}"
        with quiet_terminal(log_file, verbose), unschedulable_is_an_error(meta.get("resources", {})):
            try:
                tuner.fit()  # Tune handles the first Ctrl-C itself: it saves state and returns
            except KeyboardInterrupt:
                interrupted = True
            finally:
                console.close()
    except (Unschedulable, StorageLost):
        raise
    except TuneError as exc:  # the experiment itself broke, not a trial
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (Unschedulable, StorageLost)):
            raise cause from None
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise RunFailed(f"the sweep stopped: {lines[-1] if lines else exc}; its state is in "
                        f"{experiment_dir} (tune resume {experiment_dir})") from None
    except OSError as exc:
        if local:
            raise
        # Ray's last read of the bucket (its results, at the end) found it gone.
        raise storage_lost(experiment_dir, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if not local and not verbose:
        console.print(f"Ray's log: {log_file}")
    experiment = load_experiment(experiment_dir)
    experiment.live = False  # this driver has stopped: unfinished trials are interrupted
    counts = experiment.status_counts()
    best = experiment.best_trial()
    target = meta.get("target")
    value = best.best_value(meta["metric"], meta["mode"]) if best is not None else None
    reached = target is not None and value is not None and (value >= target if meta["mode"] == "max"
                                                            else value <= target)
    # Ray ends a Ctrl-C'd sweep quietly; between two trials nothing is left
    # running, but the trials it had not created yet are still to run.
    unfinished = sum(n for s, n in experiment.state_counts().items() if s in (INTERRUPTED_STATE, PENDING_STATE))
    interrupted = interrupted or (unfinished > 0 and not reached)
    console.finish(experiment, best, interrupted, time.perf_counter() - started)
    if reached:
        console.print(f"{meta['metric']} reached its target {target:g} (metric.target): the sweep stopped there")
    return SweepOutcome(experiment_dir, counts, best, interrupted)
