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
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tune_pipeline.data import DATA_KEYS, dataset_key, load_for_config
from tune_pipeline.experiment import FAILED, FINISHED, METADATA_FILE, Trial, load_experiment, read_metadata
from tune_pipeline.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunFailed, UserError
from tune_pipeline.cluster import local_head_address
from tune_pipeline.lock import ExperimentLock
from tune_pipeline.space import (REPEAT_KEY, SearchSpace, check_tune, parse_space, to_tune,
                                 with_scheduler)
from tune_pipeline.storage import location, remove_tree

CHECKPOINTS_TO_KEEP = 2  # the best and the latest: export needs one, resume the other
# On remote storage Ray stages the experiment state locally and uploads it at
# most every sync period (default 300 s).  After a SIGKILL the bucket then held
# a searcher state that disagreed with the trial list, and `tune resume` waited
# forever for a trial that would never come.  Uploading at each state save
# (Ray saves every >= 10 s) keeps the bucket as current as a local folder.
REMOTE_SYNC_SECONDS = 0


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
    if address or os.environ.get("RAY_ADDRESS"):  # the user's choice (RAY_ADDRESS as every Ray program reads it)
        _join(ray, address, kwargs, f"--address {address}" if address else "RAY_ADDRESS")
    else:
        head, answers = local_head_address()
        if head and answers:
            # A `tune dashboard` head: the sweep shows in its dashboard.  "auto",
            # not the address itself: only Ray's own lookup of this machine's
            # head brings the head's token mode (its explicit address is refused).
            _join(ray, "auto", kwargs, f"the Ray head at {head}")
        else:
            if head and console is not None:
                console.note(f"no Ray head answers at {head} (recorded by an earlier `ray start` or "
                             f"`tune dashboard`); starting a private local Ray instead")
            # A local Ray sized to this machine; the dashboard is `tune dashboard`'s job.
            ray.init(address="local", include_dashboard=False, **kwargs)
    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def _join(ray, address: str | None, kwargs: dict, what: str) -> None:
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError) as exc:
        text = str(exc)
        cause = exc.__cause__
        hint = "start one with `tune dashboard` or `ray start --head`"
        if "uthentication" in text + str(cause) or "InvalidAuthToken" in text + str(cause):
            hint = ("the cluster asks for Ray's auth token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
                    "(from `ray get-auth-token` on the head)")
        raise UserError(f"{what}: cannot join the Ray cluster ({text.splitlines()[0]}); {hint}") from None


def fit_resources(ray, resources: dict, console) -> dict:
    """A GPU share on a cluster without GPUs would leave every trial pending forever."""
    if resources.get("gpu") and not ray.cluster_resources().get("GPU", 0):
        console.note(f"no GPU in this Ray cluster: ignoring the {resources['gpu']:g} GPU share per trial")
        resources = {**resources, "gpu": 0.0}
    return resources


def shared_dataset(space: SearchSpace) -> dict | None:
    """The dataset decoded once here, for every trial through the object store,
    when all trials train on the same data.  Loading it before Ray starts also
    makes a missing dataset a one-line error rather than a trial failure.  The
    validation split is made here too, so every trial holds out the same images."""
    if any(k in space.params for k in DATA_KEYS):
        return None  # trials differ in their data: each loads its own
    return {"key": dataset_key(space.fixed), "arrays": load_for_config(space.fixed).to_arrays()}


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


def build_trainable(shared: dict | None, resources: dict, per_compile: float):
    """The wrapped trainable; `Tuner.restore` needs the same one again."""
    from ray import tune

    from tune_pipeline.trainable import train_trial

    return tune.with_resources(tune.with_parameters(
        train_trial, shared_data=shared, trials_per_compile=per_compile), resources)


def build_callbacks(meta: dict, name: str, console):
    from tune_pipeline.progress import LiveTable

    callbacks = [LiveTable(meta["swept"], meta["metric"], meta["mode"], console, meta["trial_count"])]
    if meta.get("wandb"):
        callbacks.append(wandb_callback(meta.get("wandb_project") or "tune_pipeline", group=name))
    return callbacks


def wandb_callback(project: str, group: str):
    """Ray's WandbLoggerCallback; offline when there is no key, so it never
    prompts and never needs the network (sync later with `wandb sync`)."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    wandb_environment()
    return WandbLoggerCallback(project=project, group=group, log_config=True,
                               mode=os.environ.get("WANDB_MODE", "online"))


def wandb_environment() -> None:
    have_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
    if not have_key:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


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


def checkpoints_to_keep(meta: dict) -> int | None:
    """PBT keeps every checkpoint: a trial copies a top trial's checkpoint from
    up to perturbation_interval epochs back, which need not be among its best."""
    return None if meta.get("scheduler", {}).get("type") == "pbt" else CHECKPOINTS_TO_KEEP


def _run_config(name: str, storage: str, meta: dict, callbacks):
    from ray import tune

    stop = (target_stopper(meta["metric"], meta["mode"], meta["target"])
            if meta.get("target") is not None else None)
    return tune.RunConfig(
        name=name, storage_path=storage, callbacks=callbacks, verbose=0, stop=stop,
        sync_config=tune.SyncConfig(sync_period=REMOTE_SYNC_SECONDS),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=checkpoints_to_keep(meta), checkpoint_score_attribute=meta["metric"],
            checkpoint_score_order=meta["mode"]),
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
    from ray import tune

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

    shared = shared_dataset(space)
    ray = init_ray(options.address, options.verbose, console)
    resources = fit_resources(ray, resources, console)
    check_fits_cluster(ray, resources)
    trainable = build_trainable(shared, resources, trials_per_compile(space, ray, resources, max_concurrent))

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
        "wandb": options.wandb, "wandb_project": options.wandb_project or space.project,
        "created": datetime.now().isoformat(timespec="seconds"),
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
        parts = to_tune(space)
        tuner = tune.Tuner(
            trainable, param_space=parts["param_space"],
            tune_config=tune.TuneConfig(
                metric=space.metric, mode=space.mode, search_alg=parts["search_alg"],
                scheduler=parts["scheduler"], num_samples=parts["num_samples"],
                max_concurrent_trials=max_concurrent,
                trial_dirname_creator=trial_dirname,
                reuse_actors=True),  # measured: 20 trivial trials 33 s fresh, 5 s reused
            run_config=_run_config(name, storage, meta, build_callbacks(meta, name, console)))
    except BaseException:
        lock.release()
        remove_tree(experiment_dir)  # a start that failed leaves nothing behind
        raise
    try:
        console.start(name, experiment_dir, space.trial_count(), resources)
        return _finish(tuner, experiment_dir, meta, console, options.verbose)
    finally:
        lock.release()


def resume_sweep(experiment_dir, *, restart_errored: bool, address: str | None,
                 verbose: bool, console, more: int = 0) -> SweepOutcome:
    """Continue an experiment; with `more`, add that many trials (grid: repeats) first (extend.py)."""
    from ray import tune

    experiment_dir = location(experiment_dir)
    meta = read_metadata(experiment_dir)
    # The lock first: a driver still starting has not written Ray's state yet.
    with ExperimentLock(experiment_dir, "tune resume --more" if more else "tune resume"):
        if not tune.Tuner.can_restore(str(experiment_dir)):
            raise UserError(f"{experiment_dir}: no saved Ray Tune state to resume (did the sweep start?)")
        check_storage(str(experiment_dir), "experiment folder")
        if more:
            from tune_pipeline.extend import add_trials
            meta = add_trials(experiment_dir, meta, load_space_from_meta(meta), more)
            write_metadata(experiment_dir, meta)
            console.note(f"added {meta['added'][-1]['what']}: {meta['trial_count']} trials in all")
        return _resume_locked(experiment_dir, meta, restart_errored, address, verbose, console)


def _resume_locked(experiment_dir: Path, meta: dict, restart_errored: bool, address: str | None,
                   verbose: bool, console) -> SweepOutcome:
    from ray import tune

    space = load_space_from_meta(meta)
    shared = shared_dataset(space)
    ray = init_ray(address, verbose, console)
    resources = fit_resources(ray, dict(meta["resources"]), console)
    check_fits_cluster(ray, resources)
    trainable = build_trainable(shared, resources, trials_per_compile(
        space, ray, resources, meta.get("max_concurrent_trials")))
    if meta.get("wandb"):
        wandb_environment()  # the restored callback runs offline again without a key
    # Ray restores the run config it pickled, callbacks included; our live
    # table reattaches itself to this terminal when unpickled (progress.py).
    from tune_pipeline.extend import continue_search, restore_arguments

    tuner = tune.Tuner.restore(
        str(experiment_dir), trainable, resume_unfinished=True,
        resume_errored=False, restart_errored=restart_errored, **restore_arguments(space, meta))
    continue_search(tuner, space, meta, experiment_dir)  # trials added by --more, still to create
    console.start(meta["name"], experiment_dir, meta["trial_count"], resources, resumed=True)
    return _finish(tuner, experiment_dir, meta, console, verbose)


def load_space_from_meta(meta: dict) -> SearchSpace:
    """The search space as it was when the sweep started (the file may have
    changed since, and the working directory too: its paths were stored absolute)."""
    if "resolved_space" in meta:
        return parse_space(meta["resolved_space"], Path(meta["space_file"]), build=False)
    # Experiments from before the resolved space was stored: their Tune settings were top-level.
    raw = {"method": "grid", **meta["space"]}
    raw["tune"] = {k: raw.pop(k) for k in ("resources", "max_concurrent_trials", "num_samples", "scheduler")
                   if k in raw}
    space = parse_space(raw, Path(meta["space_file"]), meta.get("overrides", []), build=False)
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
    except Unschedulable:
        raise
    except TuneError as exc:  # the experiment itself broke, not a trial
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, Unschedulable):
            raise cause from None
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise RunFailed(f"the sweep stopped: {lines[-1] if lines else exc}; its state is in "
                        f"{experiment_dir} (tune resume {experiment_dir})") from None
    if not local and not verbose:
        console.print(f"Ray's log: {log_file}")
    experiment = load_experiment(experiment_dir)
    experiment.live = False  # this driver has stopped: unfinished trials are interrupted
    counts = experiment.status_counts()
    unfinished = sum(n for s, n in counts.items() if s not in (FINISHED, FAILED))
    interrupted = interrupted or unfinished > 0
    best = experiment.best_trial()
    console.finish(experiment, best, interrupted, time.perf_counter() - started)
    target = meta.get("target")
    value = best.best_value(meta["metric"], meta["mode"]) if best is not None else None
    if target is not None and value is not None and (value >= target if meta["mode"] == "max" else value <= target):
        console.print(f"{meta['metric']} reached its target {target:g} (metric.target): the sweep stopped there")
    return SweepOutcome(experiment_dir, counts, best, interrupted)
