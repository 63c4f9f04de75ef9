"""Reading an experiment from disk, with no Ray running: Ray Tune's state
file for each trial's status and config (ray_state.py), each trial's
result.json for its epochs, and our record of what the sweep was
(experiment_record.py).  Works on finished, interrupted and still-running
experiments."""

from __future__ import annotations

import gc
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tune_pipeline.errors import UserError
from tune_pipeline.experiment_record import ExperimentRecord, read_record
from tune_pipeline.metrics import best_of, oriented
from tune_pipeline.ray_state import format_changed, loads, ray_state_saved, read_state
from tune_pipeline.storage import location

# Ray Tune's trial statuses, as its saved state spells them (ray.tune.experiment.Trial's
# constants; kept here so readers of a finished experiment import no Ray).
FINISHED = "TERMINATED"
FAILED = "ERROR"
RUNNING = "RUNNING"
PENDING = "PENDING"
STALLED_FILE = "stalled.txt"  # why the watchdog ended a stuck trial's process (before it failed the trial instead)

# The one vocabulary of trial states a person reads: the live table, the final
# summary, `tune status`, export and the report all say these words.
PENDING_STATE, RUNNING_STATE, FINISHED_STATE = "pending", "running", "finished"
STOPPED_STATE, FAILED_STATE, INTERRUPTED_STATE = "stopped early", "failed", "interrupted"
STATES = (PENDING_STATE, RUNNING_STATE, FINISHED_STATE, STOPPED_STATE, FAILED_STATE, INTERRUPTED_STATE)


def state_name(ray_status: str, epochs: int, planned_epochs, live: bool) -> str:
    """Ray's trial status in our vocabulary.  Ray's saved state says RUNNING
    for a trial whose driver was interrupted or killed: with no driver alive,
    that trial is interrupted, at the epoch it reached."""
    if ray_status == FAILED:
        return FAILED_STATE
    if ray_status == FINISHED:
        planned = planned_epochs if isinstance(planned_epochs, int) else None
        return STOPPED_STATE if planned and epochs < planned else FINISHED_STATE
    if live:
        return RUNNING_STATE if ray_status == RUNNING else PENDING_STATE
    return INTERRUPTED_STATE if ray_status == RUNNING or epochs > 0 else PENDING_STATE


def describe_counts(counts: dict[str, int]) -> str:
    """`2 finished, 1 failed`, in the vocabulary's order."""
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s))


def driver_running(path) -> bool:
    """Whether a live driver holds the experiment's lock (lock.py): its
    process on this host, or a fresh heartbeat from another node."""
    from tune_pipeline.lock import ExperimentLock

    verdict = ExperimentLock(path).verdict()
    return verdict.state == "live" and verdict.holder is not None


@dataclass(eq=False)  # a trial is itself: `in` and `==` compare identity, never whole histories
class Trial:
    trial_id: str
    status: str
    config: dict
    path: Path
    history: list[dict] = field(default_factory=list)
    error: str | None = None
    # best_value by (metric, mode): the table, the ranking and the summary each ask.
    _bests: dict = field(default_factory=dict, repr=False)

    @property
    def last(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def error_file(self) -> Path | None:
        """Ray's file with the full traceback of a failed trial."""
        return next(iter(sorted(self.path.glob("error*.txt"))), None) if self.error else None

    @property
    def epochs(self) -> int:
        epoch = self.last.get("epoch", 0)
        return int(epoch) if isinstance(epoch, (int, float)) and math.isfinite(epoch) else 0

    def best_value(self, metric: str, mode: str) -> float | None:
        if (metric, mode) not in self._bests:
            values = [h[metric] for h in self.history if isinstance(h.get(metric), (int, float))
                      and math.isfinite(h[metric])]
            self._bests[metric, mode] = best_of(values, mode) if values else None
        return self._bests[metric, mode]

    def best_checkpoint(self, metric: str, mode: str) -> Path | None:
        """The kept checkpoint of the best epoch, else the newest kept one."""
        kept = [(h, self.path / h["checkpoint_dir_name"]) for h in self.history
                if isinstance(h.get("checkpoint_dir_name"), str) and h["checkpoint_dir_name"]
                and (self.path / h["checkpoint_dir_name"]).exists()]
        if not kept:
            return None
        scored = [(oriented(h[metric], mode), path) for h, path in kept if isinstance(h.get(metric), (int, float))]
        return max(scored, key=lambda s: s[0])[1] if scored else kept[-1][1]


def _error_reason(text: str) -> str:
    """The last exception line of Ray's error.txt, without module paths."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.match(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Failed|Interrupt)\w*)(?:\([^)]*\))?: (.+)$", line)
        if match:
            return f"{match.group(1)}: {match.group(2)}"
    return lines[-1] if lines else "unknown error"


def _read_json(path: Path):
    """The parsed file, or None when it is missing, unreadable or half-written
    (a live sweep rewrites these files; a crashed one can leave them cut short)."""
    try:
        return json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError, RecursionError):
        return None


def _read_history(trial_dir: Path, config: dict | None = None) -> list[dict]:
    """The trial's result rows, without the copy of its config Ray writes
    into every row (the trial keeps one, `config`): cut out of the text
    before parsing, it costs neither the parse nor the memory."""
    path = trial_dir / "result.json"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    if config:
        text = text.replace(', "config": ' + json.dumps(config), "")
    try:  # one parse for the whole file: rows share their keys' strings
        rows = loads("[" + text.rstrip("\n").replace("\n", ",") + "]")
    except (ValueError, RecursionError):
        rows = []
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError):
                continue  # a line being written right now, or one cut short by a crash
    kept: list[dict] = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        row.pop("config", None)  # one the text cut missed (written differently): still one copy
        # A trial resumed from a checkpoint older than its last row (its driver died
        # between two of Ray's state saves) writes those epochs again: the rerun is the
        # history it went on from.
        iteration = row.get("training_iteration")
        while (kept and isinstance(iteration, int) and isinstance(kept[-1].get("training_iteration"), int)
               and kept[-1]["training_iteration"] >= iteration):
            kept.pop()
        kept.append(row)
    return kept


NEVER_STARTED = ("never started (its driver stopped before Ray saved its first state); "
                 "`tune resume` starts it from its recorded space")


class Experiment:
    def __init__(self, path: Path, record: ExperimentRecord, trials: list[Trial], notes: list[str] | None = None):
        self.path = path
        self.record = record  # what the sweep was (tune_pipeline.json); empty where that file is damaged
        self.trials = trials
        self.notes = notes or []  # damaged files skipped while reading, for the user to know

    @property
    def metric(self) -> str:
        """The sweep's metric; metrics.py's default where damaged metadata lost it."""
        from tune_pipeline.metrics import default_metric
        return self.record.metric or default_metric(held_out=False)[0]

    @property
    def mode(self) -> str:
        from tune_pipeline.metrics import goal
        return self.record.mode or goal(self.metric)

    def mode_for(self, metric: str) -> str:
        """max or min: the sweep's own for its metric, else by the metric's nature."""
        from tune_pipeline.metrics import goal
        return self.mode if metric == self.metric else goal(metric)

    @property
    def swept(self) -> list[str]:
        return list(self.record.swept)

    @property
    def name(self) -> str:
        return self.record.name or self.path.name

    @property
    def started(self) -> bool:
        return ray_state_saved(self.path)

    @property
    def live(self) -> bool:
        """A driver is running this experiment now (read once, when first asked)."""
        if not hasattr(self, "_live"):
            self._live = driver_running(self.path)
        return self._live

    @live.setter
    def live(self, value: bool) -> None:
        self._live = value

    def state(self, trial: Trial) -> str:
        return state_name(trial.status, trial.epochs, trial.config.get("epochs"), self.live)

    def state_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATES}
        for trial in self.trials:
            counts[self.state(trial)] += 1
        # Ray creates trials lazily: those of the sweep it has not made yet are pending too.
        counts[PENDING_STATE] += max((self.record.trial_count or 0) - len(self.trials), 0)
        return {s: n for s, n in counts.items() if n}

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        return counts

    def ranked(self, metric: str | None = None, mode: str | None = None) -> list[Trial]:
        """Trials with a result, best first by their best value of `metric`."""
        metric, mode = metric or self.metric, mode or self.mode
        scored = [(t.best_value(metric, mode), t) for t in self.trials]
        scored = [(v, t) for v, t in scored if v is not None]
        scored.sort(key=lambda vt: oriented(vt[0], mode), reverse=True)  # stable: ties keep trial order
        return [t for _, t in scored]

    def best_trial(self) -> Trial | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def failed_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.status == FAILED]


def _trial_from_state(path: Path, record) -> Trial | None:
    if record is None:
        return None
    info, error_file = record
    trial_dir = path / str(info.get("relative_logdir") or "")
    error = None
    if error_file:
        try:
            error = _error_reason((trial_dir / error_file).read_text(errors="replace"))
        except OSError:
            error = "failed"
        try:
            error = (trial_dir / STALLED_FILE).read_text().strip() or error
        except OSError:
            pass
    config = info.get("config") if isinstance(info.get("config"), dict) else {}
    status = info.get("status") if isinstance(info.get("status"), str) else PENDING
    return Trial(info["trial_id"], status, config, trial_dir, _read_history(trial_dir, config), error)


def _config_from_results(trial_dir: Path) -> dict:
    """The config Ray wrote into the trial's last result row, when its
    params.json is damaged (a rare second read of result.json)."""
    try:
        lines = (trial_dir / "result.json").read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and isinstance(row.get("config"), dict):
            return row["config"]
    return {}


def load_experiment(path) -> Experiment:
    """`path`: a local folder or a URI (s3://bucket/prefix/NAME)."""
    # Every object read here is a row of parsed JSON: nothing refers back, so
    # the cycle collector's passes over the growing heap (100,000 rows at
    # 5,000 trials) find nothing; off while reading, 10-20% of `tune status`.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load_experiment(path)
    finally:
        if collecting:
            gc.enable()


def _load_experiment(path) -> Experiment:
    path = location(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such experiment folder")
    notes: list[str] = []
    record = read_record(path, notes)
    trials: dict[str, Trial] = {}
    entries, state_file = read_state(path, notes)
    lost = set(record.lost_trials)  # rerun under new ids: the reruns are the trials
    unread = 0
    for entry in entries:
        trial = _trial_from_state(path, entry)
        if trial is None:
            unread += 1
        elif trial.trial_id not in lost:
            trials[trial.trial_id] = trial
    if unread and unread == len(entries):  # not one entry in the layout we know: Ray's format changed
        raise format_changed(state_file, "trial_data[]: [trial JSON with trial_id, runtime JSON]")
    if unread:
        notes.append(f"{state_file.name}: {unread} trial entr{'y' if unread == 1 else 'ies'} unreadable; "
                     f"those trials are read from their folders")
    # Trials that started after the last state save exist only as folders;
    # so do failed ones that `--restart-errored` replaced by a rerun.
    replaced = set(record.replaced_trials)
    known = {t.path.name for t in trials.values()}
    for params in sorted(path.glob("trial_*/params.json")):
        trial_dir = params.parent
        if trial_dir.name in known:
            continue  # read with its state entry: each result.json is read once
        history = _read_history(trial_dir)
        trial_id = history[0].get("trial_id") if history else None
        if not isinstance(trial_id, str):
            trial_id = trial_dir.name.removeprefix("trial_")
        if trial_id in trials or trial_id in replaced or trial_id in lost:
            continue
        config = _read_json(params)
        if not isinstance(config, dict):  # being written, or cut short by a crash
            config = _config_from_results(trial_dir)
            notes.append(f"{params}: damaged; config taken from its results" if config
                         else f"{params}: damaged; config unknown")
        trials[trial_id] = Trial(trial_id, RUNNING, config, trial_dir, history)
    return Experiment(path, record, sorted(trials.values(), key=lambda t: t.trial_id), notes)
