"""What a trial keeps of its checkpoints, and the disk a sweep needs for them.

A trial writes a full checkpoint every epoch (train.py's state: model,
optimizer, schedule).  While it runs it holds its latest (what `tune resume`
continues from) and, where an outcome keeps its best, the best so far.  Once
it ends, it keeps what `tune.checkpoints` says for its outcome (finished,
stopped early by the scheduler, failed):

    tune:
      checkpoints: best                        # one word for every outcome
      checkpoints: {finished: best, stopped: none, failed: none}

    best    the checkpoint of its best epoch by the sweep's metric (export's
            `checkpoint` column); the default
    N       its N best (N >= 1)
    latest  its last epoch's (only what resuming needs)
    none    nothing
    all     every epoch's

Ray keeps every checkpoint (`checkpoint_config`) and `pruner`, a Tune
callback, deletes.  Ray's own `num_to_keep=N` kept the N best *and* the
latest (three where two were meant) and forced a save of the whole
experiment state every N checkpoints of any trial.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tune_pipeline.errors import UserError
from tune_pipeline.resources import DEFAULT_RESOURCES
from tune_pipeline.storage import is_uri, nearest_existing

OUTCOMES = ("finished", "stopped", "failed")
WORDS = ("best", "latest", "none", "all")
DEFAULT = "best"
LARGE_BYTES = 20 << 30  # a sweep's checkpoints past this get a note, fitting or not
# torch.save's own bytes beside the tensors' (zip entries, pickled structure),
# measured at 0.5-0.9 KB per tensor for every model (tests/test_retention.py).
BYTES_PER_TENSOR = 1024


def parse(value, where: str, problems: list[str]) -> dict:
    """{outcome: word or N} from `tune.checkpoints` (absent: the default)."""
    if value is None:
        return {outcome: DEFAULT for outcome in OUTCOMES}
    if isinstance(value, dict):
        for key in sorted(map(str, set(value) - set(OUTCOMES))):
            problems.append(f"{where}.{key}: unknown outcome; use {', '.join(OUTCOMES)}")
        return {outcome: _setting(value.get(outcome, DEFAULT), f"{where}.{outcome}", problems)
                for outcome in OUTCOMES}
    setting = _setting(value, where, problems)
    return {outcome: setting for outcome in OUTCOMES}


def _setting(value, where: str, problems: list[str]):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value in WORDS:
        return value
    problems.append(f"{where}: must be {', '.join(WORDS)} or a number of best checkpoints >= 1, got {value!r}")
    return DEFAULT


def describe(policy: dict) -> str:
    """`best` when every outcome keeps the same, else `finished: best, stopped: none, ...`."""
    settings = set(map(str, policy.values()))
    if len(settings) == 1:
        return str(policy[OUTCOMES[0]])
    return ", ".join(f"{outcome}: {policy[outcome]}" for outcome in OUTCOMES)


def _best_count(setting) -> int | None:
    """How many best checkpoints a setting keeps (None: all of them)."""
    if setting == "all":
        return None
    if setting == "best":
        return 1
    return setting if isinstance(setting, int) else 0


def kept_after(setting, epochs: int) -> int:
    """At most how many checkpoints an ended trial keeps."""
    if setting == "all":
        return epochs
    if setting == "latest":
        return 1
    return min(_best_count(setting) or 0, epochs)


def held_while_running(policy: dict, epochs: int) -> int:
    """At most how many a running trial holds between two of Ray's state
    saves: its best (for the outcomes that keep them), its latest, and the
    latest of each of the last two saves."""
    counts = [_best_count(s) for s in policy.values()]
    if None in counts:
        return epochs
    return min(max(counts) + 3, epochs)


def checkpoint_config(metric: str, mode: str):
    """Ray's CheckpointConfig: keep everything, ranked by the metric; the
    pruner below deletes.  Ray's own `num_to_keep` forces a save of the whole
    experiment state every `num_to_keep` checkpoints of any trial (so that
    the saved state never names a deleted checkpoint): at 5,000 trials that
    is a 160 MB file rewritten every epoch or two of every trial."""
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=metric,
                                 checkpoint_score_order=mode)


def outcome(trial, failed: bool) -> str:
    """A Ray trial's outcome, in the words `tune status` uses for it."""
    from tune_pipeline.experiment import FINISHED, STOPPED_STATE, state_name

    if failed:
        return "failed"
    epoch = (trial.last_result or {}).get("epoch", 0)
    state = state_name(FINISHED, epoch if isinstance(epoch, int) else 0, trial.config.get("epochs"), live=True)
    return "stopped" if state == STOPPED_STATE else "finished"


def running_setting(policy: dict):
    """What a running trial must hold beyond its latest: the most best
    checkpoints any outcome keeps ("all" if one keeps all)."""
    counts = [_best_count(s) for s in policy.values()]
    return "all" if None in counts else max(counts) or "latest"


def prune(manager, setting, protect=()) -> list:
    """Delete the checkpoints of Ray's checkpoint manager (best last, when
    scored) that `setting` does not keep and `protect` does not name, and
    make the manager forget them; returns the deleted paths.  The manager's
    latest stays its latest while it is kept."""
    scored = manager._checkpoint_results
    latest = manager.latest_checkpoint_result
    if setting == "all":
        keep = list(scored)
    elif setting == "latest":
        keep = [latest]
    else:
        count = _best_count(setting)
        keep = scored[len(scored) - count:] if count else []
    keep = {id(r) for r in [*keep, *protect] if r is not None}
    deleted = []
    for result in [*scored, *([latest] if latest is not None and all(r is not latest for r in scored) else [])]:
        if id(result) in keep:
            continue
        checkpoint = result.checkpoint
        try:
            checkpoint.filesystem.delete_dir(checkpoint.path)
        except (OSError, FileNotFoundError):
            pass  # gone already
        deleted.append(checkpoint.path)
    manager._checkpoint_results = [r for r in scored if id(r) in keep]
    if latest is not None and id(latest) not in keep:
        manager._latest_checkpoint_result = manager._checkpoint_results[-1] if manager._checkpoint_results else None
    return deleted


def remove_strays(manager, filesystem, trial_folder: str) -> list:
    """Delete the checkpoint folders in an ended trial's folder that Ray's
    manager never recorded; returns their paths.  A trial that the scheduler
    stops while its next epoch is being saved leaves that epoch's checkpoint
    on disk, and Ray drops the result that names it: no setting would keep
    it, and nothing would ever delete it."""
    import pyarrow.fs

    recorded = [*manager._checkpoint_results, manager.latest_checkpoint_result]
    known = {r.checkpoint.path.rstrip("/") for r in recorded if r is not None}
    try:
        entries = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_folder))
    except (OSError, FileNotFoundError):
        return []
    strays = [e.path for e in entries if e.type == pyarrow.fs.FileType.Directory
              and e.base_name.startswith("checkpoint_") and e.path.rstrip("/") not in known]
    for path in strays:
        try:
            filesystem.delete_dir(path)
        except (OSError, FileNotFoundError):
            pass  # gone already
    return strays


def pruner(policy: dict, while_running: bool = True):
    """A Tune callback that deletes what no outcome keeps while trials run,
    and what each trial's outcome does not keep once it ends.  Without
    `while_running` (population-based training, whose trials copy another
    trial's checkpoint from up to an interval back) nothing goes before the
    experiment ends.

    The experiment state Ray saved last names each running trial's latest
    checkpoint, which `tune resume` continues from.  So a checkpoint is
    deleted only once the trial's latest at each of the last two state saves
    is newer (a save that is still being copied to storage is not yet the
    last one); at the experiment's end Ray has waited for its final save, and
    everything not kept goes."""
    from ray import tune

    from tune_pipeline.experiment import FAILED, FINISHED

    class CheckpointPruner(tune.Callback):
        def __init__(self):
            self.policy = dict(policy)
            self.running = running_setting(self.policy)
            self.while_running = while_running
            self._reset()

        def _reset(self):
            self.live: dict = {}    # trial_id -> trial, running
            self.ended: dict = {}   # trial_id -> [trial, its outcome's setting, state saves since]
            self.saved: dict = {}   # trial_id -> its latest at the last two state saves

        def __getstate__(self):  # Ray pickles its callbacks: never the trials
            return {"policy": self.policy, "running": self.running, "while_running": self.while_running}

        def __setstate__(self, state):
            self.__dict__.update({"while_running": True, **state})
            self._reset()

        def _prune(self, trial, setting, final: bool = False) -> None:
            manager = trial.run_metadata.checkpoint_manager
            protect = [] if final else [*self.saved.get(trial.trial_id, ()), manager.latest_checkpoint_result]
            if prune(manager, setting, protect):
                trial.run_metadata.invalidate_cache()
                trial.invalidate_json_state()
            if final and trial.status in (FINISHED, FAILED):  # its worker is gone: no save is under way
                remove_strays(manager, trial.storage.storage_filesystem, trial.storage.trial_fs_path)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.live[trial.trial_id] = trial

        def _end(self, trial, failed: bool) -> None:
            self.live.pop(trial.trial_id, None)
            setting = self.policy[outcome(trial, failed)]
            self.ended[trial.trial_id] = [trial, setting, 0]  # 0: state saves since it ended
            if self.while_running:
                self._prune(trial, setting)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._end(trial, failed=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, failed=True)

        def get_state(self):
            """Ray asks at every save of the experiment state: the moment to prune."""
            if not self.while_running:
                return None
            for trial in self.live.values():
                self._prune(trial, self.running)
            for trial_id, ended in list(self.ended.items()):
                trial, setting, ended[2] = ended[0], ended[1], ended[2] + 1
                if ended[2] > 2:  # two saves since it ended name it ended: nothing to protect
                    self._prune(trial, setting, final=True)
                    del self.ended[trial_id]
                    self.saved.pop(trial_id, None)
                else:
                    self._prune(trial, setting)
            for trial in [*self.live.values(), *(ended[0] for ended in self.ended.values())]:
                latest = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
                self.saved[trial.trial_id] = [*self.saved.get(trial.trial_id, ())[-1:], latest]
            return None  # nothing of ours to save

        def on_experiment_end(self, trials, **info):
            """After Ray's final save, which it waited for: ended trials keep
            what their outcome keeps, unfinished ones their best and latest."""
            for trial, setting, _ in self.ended.values():
                self._prune(trial, setting, final=True)
            if self.while_running:
                for trial in self.live.values():
                    self._prune(trial, self.running)
            self._reset()

    return CheckpointPruner()


# ---------------------------------------------------------------- the disk a sweep needs

def checkpoint_bytes(model: str, optimizer: str, momentum: float = 0.9, num_classes: int = 10) -> int:
    """One checkpoint of `model` (train.py's state): its weights and buffers,
    the optimizer's state per weight (SGD with momentum one copy, Adam two),
    and torch.save's bytes per tensor."""
    from tune_pipeline.models import create_model

    net = create_model(model, num_classes=num_classes)
    params = list(net.parameters())
    buffers = list(net.buffers())
    weights = sum(p.numel() * p.element_size() for p in params)
    slots = 2 if optimizer in ("adam", "adamw") else (1 if momentum > 0 else 0)
    tensors = len(params) * (1 + slots) + len(buffers)
    return weights * (1 + slots) + sum(b.numel() * b.element_size() for b in buffers) + tensors * BYTES_PER_TENSOR


def _choices(space, key: str) -> list:
    param = space.params.get(key)
    if param is None:
        return [space.fixed.get(key)]
    return list(param.values) if param.values else [None]  # None: a distribution over the key


@dataclass
class DiskNeed:
    trials: int
    running: int            # trials at once
    smallest: int           # bytes of one checkpoint, by the space's lightest and heaviest choices
    largest: int
    kept: tuple[int, int]   # per ended trial: the fewest and the most any outcome keeps
    extra: int              # at most, per running trial beyond what it keeps at its end
    policy: dict

    @property
    def low(self) -> int:
        """Bytes if every trial ends with the outcome that keeps least, at the lightest choices."""
        return self.smallest * (self.trials * self.kept[0] + self.running * self.extra)

    @property
    def high(self) -> int:
        return self.largest * (self.trials * self.kept[1] + self.running * self.extra)

    def line(self) -> str:
        each = _size(self.largest) if self.smallest == self.largest else \
            f"{_size(self.smallest)}-{_size(self.largest)}"
        kept = str(self.kept[1]) if self.kept[0] == self.kept[1] else f"{self.kept[0]}-{self.kept[1]}"
        return (f"checkpoints: up to {_size(self.high)} ({self.trials:,} trials x {kept} kept x {each}, "
                f"+ {self.extra} per running trial; tune.checkpoints: {describe(self.policy)})")


def estimate(space, running: int) -> DiskNeed:
    """What the sweep's checkpoints take on disk: each ended trial's kept
    ones and what each of `running` trials holds on top while it runs (its
    best and latest, and the one being written)."""
    from tune_pipeline.config import CLASS_COUNTS

    num_classes = CLASS_COUNTS.get(space.fixed.get("dataset"), 10)  # an image folder: sized as 10 classes
    optimizers = [o for o in _choices(space, "optimizer") if o] or ["sgd"]
    momenta = [m for m in _choices(space, "momentum") if isinstance(m, (int, float))]
    momentum = max(momenta) if momenta else 0.9  # a distribution over momentum: with momentum
    sizes = [checkpoint_bytes(model, optimizer, momentum, num_classes)
             for model in _choices(space, "model") if model for optimizer in optimizers]
    epochs = max(1, int(space.max_epochs()))
    kept = [kept_after(s, epochs) for s in space.checkpoints.values()]
    extra = max(held_while_running(space.checkpoints, epochs) + 1 - max(kept), 1)
    return DiskNeed(space.trial_count(), running, min(sizes), max(sizes), (min(kept), max(kept)), extra,
                    dict(space.checkpoints))


def free_bytes(storage) -> tuple[int | None, Path | None]:
    """Free bytes where a local storage path is (its nearest existing folder);
    None for object storage, which has no such number."""
    if is_uri(storage):
        return None, None
    existing = nearest_existing(Path(storage).expanduser().resolve())
    return shutil.disk_usage(existing).free, existing


def local_running(space, resources: dict | None = None, max_concurrent: int | None = None) -> int:
    """Trials at once on this machine, before Ray is asked."""
    cpus = max((resources or space.resources).get("cpu", DEFAULT_RESOURCES["cpu"]), 1e-9)
    slots = max(1, int((os.cpu_count() or 1) // cpus))
    cap = max_concurrent or space.max_concurrent_trials
    return min(slots, cap) if cap else slots


def check_disk(need: DiskNeed, storage, note, refuse: bool = True) -> str:
    """Refuse a sweep whose checkpoints cannot fit even at their fewest and
    smallest (`refuse`; else a note, as the dry run says it); `note` when
    they may not fit, or are large.  Returns the estimate and the free space."""
    free, where = free_bytes(storage)
    fewer = "keep fewer (tune.checkpoints) or free space"
    if free is not None and need.low > free:
        problem = (f"{need.line()}: {_size(free)} free in {where}, not enough even at "
                   f"{_size(need.low)}; {fewer}")
        if refuse:
            raise UserError(problem)
        note(problem)
    elif free is not None and need.high > free:
        note(f"checkpoints may not fit: up to {_size(need.high)}, {_size(free)} free in {where}; {fewer}")
    elif need.high > LARGE_BYTES:
        note(f"checkpoints: up to {_size(need.high)} on disk; tune.checkpoints sets what each trial keeps")
    return need.line() + (f"\n  {_size(free)} free in {where}" if free is not None else "")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
