"""Sweeps that continue: `tune resume EXPERIMENT --more N` adds trials to a
finished or interrupted sweep, in the same experiment (one folder, one lock,
one history).

- random: N more trials, none with a configuration already tried (a finite
  space with fewer untried configurations is refused up front);
- bayes: N more trials, from a TPE study that holds every finished trial's
  result before its first new suggestion (failed ones as failed);
- grid: N more repeats of the whole grid, each with a seed not used yet.

How: the experiment's record (experiment_record.py) holds the added trials
(`added`, and the new `trial_count`), and every later resume of the experiment hands Ray Tune a
search algorithm built here from the experiment on disk, which creates the
trials still missing from that count.  Trials Ray restores (running,
interrupted) continue as before; what they finish with is taught to the
bayes study when they end.  Ray's own searcher state from before is not
used: the trials on disk are what was tried.

The same search, built from the trials on disk, continues any resume whose
saved search state disagrees with its trial list (`search_to_rebuild`): a
driver killed while Ray saved them (two writes locally, many uploads to a
bucket) leaves one older than the other, and Ray's searcher, restored as it
is, waits forever on a trial it thinks still runs or creates trials that
exist.  Finished trials whose results never reached storage are rerun the
same way (`find_lost_trials`).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from datetime import datetime

from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.search_generator import SearchGenerator

from tune_pipeline.config import REPEAT_KEY
from tune_pipeline.errors import UserError
from tune_pipeline.experiment import FAILED, FINISHED, load_experiment
from tune_pipeline.experiment_record import ExperimentRecord
from tune_pipeline.internals import saved_search_progress, set_restored_search_alg
from tune_pipeline.labels import key
from tune_pipeline.ray_state import read_state
from tune_pipeline.sampling import sample
from tune_pipeline.space import SearchSpace
from tune_pipeline.storage import location as location_of
from tune_pipeline.tune_adapter import to_tune

MAX_DRAWS = 10_000  # redraws for one untried configuration of a continuous space


def configuration(config: dict, keys) -> tuple:
    """What makes two trials the same configuration: their swept values."""
    return tuple(key(config.get(k)) for k in keys)


def space_size(space: SearchSpace) -> float:
    """How many configurations random search can draw (inf for a continuous one)."""
    size = 1
    for param in space.params.values():
        if param.values is not None:
            size *= len({key(v) for v in param.values})
        elif param.record.grid is not None and (param.record.integral or param.record.quantized):
            size *= len(param.record.grid(param.spec))
        else:
            return math.inf
    return size


def add_trials(experiment_dir, record: ExperimentRecord, space: SearchSpace, more: int) -> ExperimentRecord:
    """The experiment's record with `more` trials (grid: repeats) added;
    refused, in one line, where they cannot mean anything."""
    if record.scheduler_type == "pbt":
        raise UserError(f"--more: {experiment_dir} ran population-based training, whose population "
                        f"is fixed when it starts; start a new sweep for a new population")
    experiment = load_experiment(experiment_dir)
    record = copy.deepcopy(record)
    tried = {configuration(t.config, space.params) for t in experiment.trials}
    existing = max(record.trial_count or 0, len(experiment.trials))
    if space.method == "grid":
        points = space.trial_count() // space.repeats
        repeats = space.repeats + more
        record.repeats = repeats
        record.repeat_key = REPEAT_KEY
        if REPEAT_KEY not in record.swept:
            record.swept = [*record.swept, REPEAT_KEY]
        record.trial_count = points * repeats
        what = f"{more} repeat{'s' if more != 1 else ''} of the grid ({points * more} trials)"
    else:
        size, needed = space_size(space), existing + more - len(experiment.trials)
        if space.method == "random" and len(tried) + needed > size:
            left = int(size) - len(tried) - (needed - more)
            raise UserError(f"--more {more}: the space has {int(size)} configurations and {len(tried)} were "
                            f"tried; at most {max(left, 0)} more (random search never repeats one)")
        record.trial_count = existing + more
        what = f"{more} trial{'s' if more != 1 else ''}"
    record.num_samples = (record.num_samples or space.num_samples) + more
    if record.resolved_space is None:  # the oldest records: the space as resumed, from now on
        record.resolved_space = space.resolved()
    record.resolved_space.setdefault("tune", {})["num_samples"] = record.num_samples
    record.added.append({"at": datetime.now().isoformat(timespec="seconds"), "more": more,
                         "what": what, "trial_count": record.trial_count})
    return record


def find_lost_trials(experiment, record: ExperimentRecord) -> list[str]:
    """Trials that trained (a checkpoint is there) and that Ray's saved state
    calls finished, with no result.json: their driver was killed before it
    copied the results (a bucket gets a trial's files after Ray's state).
    Trials Ray ended unstarted (a target reached) have no checkpoint, and an
    unreachable bucket raises rather than counting as absent.  Not for PBT:
    its population changes configs mid-run, so no rerun is the same trial."""
    if record.scheduler_type == "pbt":
        return []
    return [t.trial_id for t in experiment.trials
            if t.status == FINISHED and not t.history and not (t.path / "result.json").exists()
            and any(t.path.glob("checkpoint_*"))]


def search_to_rebuild(experiment_dir, record: ExperimentRecord) -> bool:
    """Whether a resume builds its search from the trials on disk rather than
    restoring Ray's: it did before (trials added, lost or rebuilt), or Ray's
    saved search state disagrees with its saved trial list: another count of
    trials, or one held as running that the list says ended (with a limit of
    concurrent trials, restored as saved, that search waits for it forever)."""
    if record.added or record.lost_trials or record.search_rebuilt:
        return True
    experiment_dir = location_of(experiment_dir)
    progress = saved_search_progress(experiment_dir)
    if progress is None:
        return False
    created, live, finished = progress
    entries, _ = read_state(experiment_dir, [])
    ended = {info["trial_id"] for info, _ in filter(None, entries) if info.get("status") in (FINISHED, FAILED)}
    return created != len(entries) or (not finished and bool(live & ended))


def trials_not_in_rays_list(experiment) -> list[str]:
    """Trials that exist only as folders: started after Ray's last state save.
    A restored search recreates them under the same ids; a rebuilt one does
    not, so they are run again under new ones."""
    entries, _ = read_state(experiment.path, [])
    listed = {info["trial_id"] for info, _ in filter(None, entries)}
    return [t.trial_id for t in experiment.trials if t.trial_id not in listed]


def restore_arguments(space: SearchSpace, rebuild: bool) -> dict:
    """What `Tuner.restore` needs besides its defaults when the search is
    rebuilt: the search space for bayes (Optuna builds its study from it) and
    random (trials created but not started carry placeholders for its draws)."""
    if not rebuild or space.method == "grid":
        return {}
    return {"param_space": to_tune(space)["param_space"]}


def continue_search(tuner, space: SearchSpace, record: ExperimentRecord, experiment_dir, rebuild: bool) -> int:
    """Give a restored Tuner the search algorithm that creates the trials
    still missing from the experiment's count; returns how many that is.
    A no-op unless the search is rebuilt (`search_to_rebuild`)."""
    if not rebuild:
        return 0
    experiment = load_experiment(experiment_dir)
    entries, _ = read_state(experiment.path, [])
    # Finished trials rerun because their results were lost stay in Ray's list.
    rerun = set(record.lost_trials)
    kept = sum(1 for entry in entries if entry is None or entry[0]["trial_id"] not in rerun)
    missing = max((record.trial_count or len(entries)) - kept, 0)
    searcher = _searcher(space, experiment, record.repeats)
    if record.max_concurrent_trials:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=record.max_concurrent_trials)
    set_restored_search_alg(tuner, MoreTrials(searcher, missing, str(experiment_dir),
                                              _finished_points(space, experiment)))
    return missing


def _searcher(space: SearchSpace, experiment, repeats: int):
    if space.method == "bayes":
        return to_tune(space)["search_alg"]
    if space.method == "grid":
        return GridRepeats(space, experiment, repeats)
    return UntriedRandom(space, {configuration(t.config, space.params) for t in experiment.trials})


def _finished_points(space: SearchSpace, experiment) -> list[tuple[dict, float | None, bool]]:
    """Every ended trial as bayes learns it: its swept values and the last
    value it reported (what Ray Tune tells Optuna when a trial ends), or failed."""
    if space.method != "bayes":
        return []
    points = []
    for trial in experiment.trials:
        params = {k: trial.config.get(k) for k in space.params}
        if trial.status == FAILED:
            points.append((params, None, True))
        elif trial.status == FINISHED and isinstance(trial.last.get(space.metric), (int, float)):
            points.append((params, float(trial.last[space.metric]), False))
    return points


# ------------------------------------------------------------ Ray Tune objects

class UntriedRandom(Searcher):
    """wandb's random draws (sampling.sample), never a configuration tried before."""

    def __init__(self, space: SearchSpace, tried: set):
        super().__init__(metric=space.metric, mode=space.mode)
        self.space, self.tried = space, set(tried)

    def set_search_properties(self, metric, mode, config, **spec):
        return True  # the space is ours; Tune's copy only resolves placeholders of restored trials

    def suggest(self, trial_id):
        rng = random.Random()
        for _ in range(MAX_DRAWS):
            config = {n: sample(p, rng) for n, p in self.space.params.items()}
            identity = configuration(config, self.space.params)
            if identity not in self.tried:
                self.tried.add(identity)
                return config
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


class GridRepeats(Searcher):
    """Each grid point once per seed, the seeds not run yet, grid by grid."""

    def __init__(self, space: SearchSpace, experiment, repeats: int):
        super().__init__(metric=space.metric, mode=space.mode)
        names = list(space.params)
        points = list(itertools.product(*(space.params[n].values for n in names)))
        if REPEAT_KEY in names:  # the seed is swept: the grid's own points, each once
            planned = [dict(zip(names, point)) for point in points]
            keys = names
        else:  # grid by grid, each with the next seed
            base = space.fixed.get(REPEAT_KEY, 0)
            planned = [{**dict(zip(names, point)), REPEAT_KEY: base + r} for r in range(repeats) for point in points]
            keys = [*names, REPEAT_KEY]
        # A trial config without a seed trained with the default one.
        default = {REPEAT_KEY: space.fixed.get(REPEAT_KEY, 0)}
        present = {configuration({**default, **t.config}, keys) for t in experiment.trials}
        self.todo = [c for c in planned if configuration(c, keys) not in present]

    def set_search_properties(self, metric, mode, config, **spec):
        return True

    def suggest(self, trial_id):
        return self.todo.pop(0) if self.todo else Searcher.FINISHED

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


class _Spec:
    """Ray's experiment spec, as a SearchGenerator keeps it (`.spec`)."""

    def __init__(self, spec: dict):
        self.spec = spec


def _saved_spec(dirpath: str, experiment_dir: str) -> dict:
    """The spec Ray created the experiment's trials from (its searcher state
    holds it), pointed at where the experiment is now."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.utils.util import _load_newest_checkpoint

    state = _load_newest_checkpoint(dirpath, SearchGenerator.CKPT_FILE_TMPL.format("*"))
    if state and state.get("experiment") is not None:
        spec = copy.copy(state["experiment"].spec)
    else:
        state = _load_newest_checkpoint(dirpath, BasicVariantGenerator.CKPT_FILE_TMPL.format("*"))
        if not state or not state.get("_iterators"):
            raise UserError(f"{experiment_dir}: Ray Tune's search state is missing; the sweep cannot take "
                            f"more trials")
        spec = copy.copy(state["_iterators"][0].unresolved_spec)
    parent, _, name = experiment_dir.rstrip("/").rpartition("/")
    fresh = StorageContext(storage_path=parent, experiment_dir_name=name)
    storage = copy.copy(spec["storage"])  # as Ray re-points the trials it restores
    storage.storage_filesystem, storage.storage_fs_path = fresh.storage_filesystem, fresh.storage_fs_path
    storage.experiment_dir_name = name
    spec["storage"] = storage
    return spec


class MoreTrials(SearchGenerator):
    """Creates `missing` trials from `searcher` in a resumed experiment; the
    ends of trials it did not create go to a bayes study as evaluated points."""

    def __init__(self, searcher, missing: int, experiment_dir: str, finished: list):
        super().__init__(searcher)
        self._total_samples = missing
        self._created: set[str] = set()
        self._experiment_dir = experiment_dir
        self._finished_points = finished

    def set_search_properties(self, metric, mode, config, **spec):
        done = super().set_search_properties(metric, mode, config, **spec)
        for params, value, error in self._finished_points:  # before any suggestion
            self._learn(params, value, error)
        return done

    def has_checkpoint(self, dirpath):
        return True  # restore_from_dir reads the spec Ray saved, and nothing else

    def restore_from_dir(self, dirpath):
        self._experiment = _Spec(_saved_spec(dirpath, self._experiment_dir))

    def create_trial_if_possible(self, experiment_spec):
        trial = super().create_trial_if_possible(experiment_spec)
        if trial is not None:
            self._created.add(trial.trial_id)
        return trial

    def on_trial_result(self, trial_id, result):
        if trial_id in self._created:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if trial_id in self._created:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        space = getattr(_base(self.searcher), "_space", None)
        if space and result and isinstance(result.get("config"), dict):  # bayes: a restored trial ended
            value = result.get(self.metric)
            ok = isinstance(value, (int, float))
            self._learn({k: result["config"].get(k) for k in space}, value if ok else None, error or not ok)

    def _learn(self, params: dict, value, error: bool) -> None:
        base = _base(self.searcher)
        if hasattr(base, "add_evaluated_point"):
            try:
                base.add_evaluated_point(params, value, error=error)
            except (ValueError, TypeError, KeyError):
                pass  # a value outside the study's space cannot teach it


def _base(searcher):
    while hasattr(searcher, "searcher"):
        searcher = searcher.searcher
    return searcher
