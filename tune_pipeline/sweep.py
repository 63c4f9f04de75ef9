"""Running and resuming a sweep: `run_sweep` (every check first, then the
experiment's folder and record, then the Tuner) and `resume_sweep`, the
Tuner's run config and callbacks, and what the run came to (`SweepOutcome`).

Its parts live beside it: the Ray session (ray_session.py), the experiment's
folder and tune_pipeline.json (experiment_record.py), what every trial is
given (trial_inputs.py), and wandb and the bucket (integrations.py).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tune_pipeline import retention
from tune_pipeline.experiment import FAILED, INTERRUPTED_STATE, NEVER_STARTED, PENDING_STATE, Trial, load_experiment
from tune_pipeline.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunFailed, UserError
from tune_pipeline.experiment_record import (METADATA_FILE, ExperimentRecord, check_name, check_resumable,
                                             check_resume_format, check_storage, create_experiment_dir,
                                             experiment_name, load_space_from_meta, read_record,
                                             resolve_storage, write_record)
from tune_pipeline.integrations import StorageLost, storage_lost, storage_watch, wandb_callback, wandb_environment
from tune_pipeline.lock import ExperimentLock
from tune_pipeline.ray_state import ray_state_saved
from tune_pipeline.ray_session import (Unschedulable, check_fits_cluster, check_resources, fit_resources, init_ray,
                                       trials_per_compile, unschedulable_is_an_error)
from tune_pipeline.space import SearchSpace
from tune_pipeline.metrics import reaches
from tune_pipeline.storage import is_uri, location, remove_tree
from tune_pipeline.trial_inputs import build_trainable, read_scripts, recorded_scripts, shared_dataset
from tune_pipeline.tune_adapter import check_tune, to_tune

# On remote storage Ray stages the experiment state locally and uploads it at
# most every sync period (default 300 s): a driver killed outright lost up to
# five minutes of results.  Uploading at each state save (Ray saves every >= 10 s)
# keeps the bucket about as current as a local folder.  An upload is one file at
# a time, so a kill can still land between the trial list and the search state:
# the resume reconciles them (extend.search_to_rebuild).
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


def build_callbacks(record: ExperimentRecord, name: str, console):
    from tune_pipeline.live_table import LiveTable

    callbacks = [LiveTable(record.swept, record.metric, record.mode, console, record.trial_count),
                 # PBT's trials copy each other's checkpoints from an interval back: none go early.
                 retention.pruner(record.checkpoints, while_running=record.scheduler_type != "pbt")]
    if record.wandb and wandb_environment(console) != "disabled":
        callbacks.append(wandb_callback(record.wandb_project or "tune_pipeline", group=name))
    if is_uri(record.storage_path or ""):
        callbacks.append(storage_watch(str(location(record.storage_path) / name)))
    from tune_pipeline.ended_trials import EndedTrialsTrimmed

    return [*callbacks, EndedTrialsTrimmed(record.metric)]  # last: every other callback sees the trial's end whole


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
            if isinstance(value, (int, float)) and reaches(value, target, mode):
                self.reached = True
            return False

        def stop_all(self) -> bool:
            return self.reached

    return TargetReached()


def _run_config(name: str, storage: str, record: ExperimentRecord, callbacks):
    from ray import tune

    stop = (target_stopper(record.metric, record.mode, record.target)
            if record.target is not None else None)
    return tune.RunConfig(
        name=name, storage_path=storage, callbacks=callbacks, verbose=0, stop=stop,
        sync_config=tune.SyncConfig(sync_period=REMOTE_SYNC_SECONDS),
        checkpoint_config=retention.checkpoint_config(record.metric, record.mode),
        # A trial that fails is recorded with its reason; the others go on.
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False))


def run_sweep(space: SearchSpace, options: SweepOptions, console) -> SweepOutcome:
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

    record = ExperimentRecord.for_sweep(
        space, name=name, storage_path=storage, resources=resources, max_concurrent_trials=max_concurrent,
        overrides=options.overrides, wandb=options.wandb, wandb_project=options.wandb_project,
        transform_scripts=scripts)
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
        write_record(experiment_dir, record)
        tuner = new_tuner(space, record, trainable, name, storage, console)
    except BaseException:
        lock.release()
        remove_tree(experiment_dir)  # a start that failed leaves nothing behind
        raise
    try:
        console.start(name, experiment_dir, space.trial_count(), resources)
        return _finish(tuner, experiment_dir, record, console, options.verbose)
    finally:
        lock.release()


def new_tuner(space: SearchSpace, record: ExperimentRecord, trainable, name: str, storage: str, console):
    """The Tuner of a sweep that starts now (`tune search`, or `tune resume` of
    one that never started)."""
    from ray import tune

    parts = to_tune(space, record.max_concurrent_trials)
    return tune.Tuner(
        trainable, param_space=parts["param_space"],
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, search_alg=parts["search_alg"],
            scheduler=parts["scheduler"], num_samples=parts["num_samples"],
            max_concurrent_trials=parts["max_concurrent_trials"],
            trial_dirname_creator=trial_dirname,
            reuse_actors=True),  # measured: 20 trivial trials 33 s fresh, 5 s reused
        run_config=_run_config(name, storage, record, build_callbacks(record, name, console)))


def resume_sweep(experiment_dir, *, restart_errored: bool, address: str | None,
                 verbose: bool, console, more: int = 0) -> SweepOutcome:
    """Continue an experiment; with `more`, add that many trials (grid: repeats) first (extend.py)."""
    experiment_dir = location(experiment_dir)
    record = read_record(experiment_dir)
    check_resumable(record, experiment_dir)
    # The lock first: a driver still starting has not written Ray's state yet.
    with ExperimentLock(experiment_dir, "tune resume --more" if more else "tune resume"):
        check_storage(str(experiment_dir), "experiment folder")
        started = ray_state_saved(experiment_dir)
        if started:
            check_resume_format(experiment_dir, record, restart_errored)
        if more:
            from tune_pipeline.extend import add_trials

            if not started:
                raise UserError(f"--more: {experiment_dir} never started; `tune resume {experiment_dir}` "
                                f"starts it, then --more can add to it")
            record = add_trials(experiment_dir, record, load_space_from_meta(record), more)
            write_record(experiment_dir, record)
            console.note(f"added {record.added[-1]['what']}: {record.trial_count} trials in all")
        return _resume_locked(experiment_dir, record, started, restart_errored, address, verbose, console)


def _clear_unstarted(experiment_dir) -> None:
    """What Ray wrote of a sweep that never started (tuner.pkl, its searcher's
    first state, empty trial folders), so it starts clean: ours stays."""
    from tune_pipeline.lock import LOCK_FILE
    from tune_pipeline.sweep_console import LOG_FILE

    for entry in list(experiment_dir.iterdir()):
        if entry.name in (METADATA_FILE, LOG_FILE) or entry.name.startswith(LOCK_FILE):
            continue
        if entry.is_dir():
            remove_tree(entry)
        else:
            entry.unlink()


def _resume_locked(experiment_dir: Path, record: ExperimentRecord, started: bool, restart_errored: bool,
                   address: str | None, verbose: bool, console) -> SweepOutcome:
    from ray import tune

    space = load_space_from_meta(record)
    shared = shared_dataset(space, console)
    scripts = recorded_scripts(record, space, console)
    with console.phase("starting Ray", seconds=0):  # never quick: said at once
        ray = init_ray(address, verbose, console)
    resources = fit_resources(ray, dict(record.resources), console)
    check_fits_cluster(ray, resources)
    trainable = build_trainable(shared, resources, trials_per_compile(
        space, ray, resources, record.max_concurrent_trials), scripts)
    del shared  # in the object store now
    if record.wandb:
        wandb_environment(console)  # the restored callback logs in the mode chosen now
    if not started:
        # Started from its recorded space rather than refused: the user asked
        # for this sweep, its folder and name are taken, and nothing of it ran.
        console.note(f"{experiment_dir}: {NEVER_STARTED.split(';')[0]}: starting it now")
        _clear_unstarted(experiment_dir)
        tuner = new_tuner(space, record, trainable, experiment_dir.name, str(experiment_dir.parent), console)
        console.start(record.name, experiment_dir, record.trial_count, resources)
        return _finish(tuner, experiment_dir, record, console, verbose)
    if restart_errored:
        # Ray reruns them under new ids; their old folders stay, with the error.
        failed = [t.trial_id for t in load_experiment(experiment_dir).failed_trials()]
        if failed:
            record = dataclasses.replace(record, replaced_trials=sorted({*record.replaced_trials, *failed}))
            write_record(experiment_dir, record)
    # Ray restores the run config it pickled, callbacks included; our live
    # table reattaches itself to this terminal when unpickled (live_table.py).
    # No param_space unless the search is rebuilt (trials added, a search state
    # older than the trial list, lost results): every value Ray's search draws
    # is saved with it (RESUME_FORMAT).
    from tune_pipeline.extend import (continue_search, find_lost_trials, restore_arguments, search_to_rebuild,
                                      trials_not_in_rays_list)

    on_disk = load_experiment(experiment_dir)  # read once for both questions below
    lost = find_lost_trials(on_disk, record)
    if lost:  # decided on first: a rerun means a rebuilt search
        record = dataclasses.replace(record, lost_trials=sorted({*record.lost_trials, *lost}))
    rebuild = search_to_rebuild(experiment_dir, record)
    abandoned = trials_not_in_rays_list(on_disk) if rebuild else []
    if rebuild:
        record = dataclasses.replace(record, search_rebuilt=True,
                                     lost_trials=sorted({*record.lost_trials, *abandoned}))
        write_record(experiment_dir, record)
    for ids, why in ((lost, "finished, but the results never reached the experiment folder"),
                     (abandoned, "started after Ray's last save of the sweep")):
        if ids:
            console.note(f"{len(ids)} trial{'s' if len(ids) != 1 else ''} ({', '.join(ids)}) {why}: "
                         f"a new trial runs in {'their' if len(ids) != 1 else 'its'} place")
    tuner = tune.Tuner.restore(
        str(experiment_dir), trainable, resume_unfinished=True,
        resume_errored=False, restart_errored=restart_errored, **restore_arguments(space, rebuild))
    continue_search(tuner, space, record, experiment_dir, rebuild)  # trials still to create
    from tune_pipeline.ended_trials import EndedTrialsTrimmed
    from tune_pipeline.internals import restored_callbacks
    from tune_pipeline.live_table import LiveTable

    callbacks = restored_callbacks(tuner)  # Ray's own list: what is added here runs
    for callback in callbacks:
        if isinstance(callback, LiveTable):  # Ray still lists the lost trials: the table counts their reruns
            callback.leave_out(record.lost_trials)
    if not any(isinstance(callback, EndedTrialsTrimmed) for callback in callbacks):
        callbacks.append(EndedTrialsTrimmed(record.metric))  # an experiment an older version started
    console.start(record.name, experiment_dir, record.trial_count, resources, resumed=True)
    return _finish(tuner, experiment_dir, record, console, verbose)


def _finish(tuner, experiment_dir, record: ExperimentRecord, console, verbose: bool = False) -> SweepOutcome:
    started = time.perf_counter()
    interrupted = False
    from ray.tune import TuneError

    from tune_pipeline.sweep_console import LOG_FILE, quiet_terminal

    local = isinstance(experiment_dir, Path)
    try:
        # Remote storage (s3://...) has no local folder: Ray's lines go to a local temp file.
        log_file = experiment_dir / LOG_FILE if local else Path(tempfile.gettempdir()) / f"{record.name}-{LOG_FILE}"
        with quiet_terminal(log_file, verbose), unschedulable_is_an_error(record.resources or {}):
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
    target = record.target
    value = best.best_value(record.metric, record.mode) if best is not None else None
    reached = target is not None and value is not None and reaches(value, target, record.mode)
    # Ray ends a Ctrl-C'd sweep quietly; between two trials nothing is left
    # running, but the trials it had not created yet are still to run.
    unfinished = sum(n for s, n in experiment.state_counts().items() if s in (INTERRUPTED_STATE, PENDING_STATE))
    interrupted = interrupted or (unfinished > 0 and not reached)
    console.finish(experiment, best, interrupted, time.perf_counter() - started)
    if reached:
        console.print(f"{record.metric} reached its target {target:g} (metric.target): the sweep stopped there")
    return SweepOutcome(experiment_dir, counts, best, interrupted)
