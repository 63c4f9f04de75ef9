"""Reading an experiment from disk, with no Ray running: Ray Tune's state
file for each trial's status and config, each trial's result.json for its
epochs, and our tune_pipeline.json for what the sweep was.  Works on
finished, interrupted and still-running experiments."""

from __future__ import annotations

import json
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from tune_pipeline.errors import UserError

METADATA_FILE = "tune_pipeline.json"
FINISHED = "TERMINATED"  # Ray Tune's trial statuses
FAILED = "ERROR"
RUNNING = "RUNNING"

# The one vocabulary of trial states a person reads: the live table, the final
# summary, `tune status`, export and the report all say these words.
PENDING_STATE, RUNNING_STATE, FINISHED_STATE = "pending", "running", "finished"
STOPPED_STATE, FAILED_STATE, INTERRUPTED_STATE = "stopped early", "failed", "interrupted"
STATES = (PENDING_STATE, RUNNING_STATE, FINISHED_STATE, STOPPED_STATE, FAILED_STATE, INTERRUPTED_STATE)
DRIVER_FILE = "driver.json"  # present while a `tune search`/`tune resume` drives the experiment


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


def mark_driver(path: Path) -> Path:
    """Record that this process drives the experiment (removed when it ends)."""
    marker = Path(path) / DRIVER_FILE
    marker.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
    return marker


def driver_running(path: Path) -> bool:
    """Whether a live process drives the experiment in `path`.  On another
    host we cannot tell: assume it runs."""
    marker = Path(path) / DRIVER_FILE
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


@dataclass
class Trial:
    trial_id: str
    status: str
    config: dict
    path: Path
    history: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def last(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def error_file(self) -> Path | None:
        """Ray's file with the full traceback of a failed trial."""
        return next(iter(sorted(self.path.glob("error*.txt"))), None) if self.error else None

    @property
    def epochs(self) -> int:
        return int(self.last.get("epoch", 0))

    def best_value(self, metric: str, mode: str) -> float | None:
        values = [h[metric] for h in self.history if isinstance(h.get(metric), (int, float))
                  and math.isfinite(h[metric])]
        if not values:
            return None
        return max(values) if mode == "max" else min(values)

    def best_checkpoint(self, metric: str, mode: str) -> Path | None:
        """The kept checkpoint of the best epoch, else the newest kept one."""
        kept = [(h, self.path / h["checkpoint_dir_name"]) for h in self.history
                if h.get("checkpoint_dir_name") and (self.path / h["checkpoint_dir_name"]).exists()]
        if not kept:
            return None
        sign = 1 if mode == "max" else -1
        scored = [(sign * h[metric], path) for h, path in kept if isinstance(h.get(metric), (int, float))]
        return max(scored, key=lambda s: s[0])[1] if scored else kept[-1][1]


def _error_reason(text: str) -> str:
    """The last exception line of Ray's error.txt, without module paths."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.match(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Failed|Interrupt)\w*)(?:\([^)]*\))?: (.+)$", line)
        if match:
            return f"{match.group(1)}: {match.group(2)}"
    return lines[-1] if lines else "unknown error"


def _read_history(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line being written right now
    return rows


def _state_files(path: Path) -> list[Path]:
    """Oldest first, by the start time in the name (a resumed sweep writes a new
    file): modification times do not order them, Ray's final sync touches all."""
    return sorted(path.glob("experiment_state-*.json"), key=lambda p: p.name)


class Experiment:
    def __init__(self, path: Path, meta: dict, trials: list[Trial]):
        self.path = path
        self.meta = meta
        self.trials = trials

    @property
    def metric(self) -> str:
        return self.meta.get("metric", "test_accuracy")

    @property
    def mode(self) -> str:
        return self.meta.get("mode", "max")

    def mode_for(self, metric: str) -> str:
        """max or min: the sweep's own for its metric, else by the metric's nature."""
        from tune_pipeline.config import METRIC_MODES
        return self.mode if metric == self.metric else METRIC_MODES.get(metric, "max")

    @property
    def swept(self) -> list[str]:
        return list(self.meta.get("swept", []))

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

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
        counts[PENDING_STATE] += max(int(self.meta.get("trial_count") or 0) - len(self.trials), 0)
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
        scored.sort(key=lambda vt: vt[0], reverse=(mode == "max"))
        return [t for _, t in scored]

    def best_trial(self) -> Trial | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def failed_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.status == FAILED]


def read_metadata(path: Path) -> dict:
    meta_file = Path(path) / METADATA_FILE
    if not meta_file.exists():
        raise UserError(f"{path}: not a tune_pipeline experiment (no {METADATA_FILE}); "
                        f"pass the folder `tune search` printed")
    return json.loads(meta_file.read_text())


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"{path}: no such experiment folder")
    meta = read_metadata(path)
    trials: dict[str, Trial] = {}
    states = _state_files(path)
    if states:
        try:
            state = json.loads(states[-1].read_text())
        except json.JSONDecodeError:  # being rewritten this instant: the previous one will do
            state = json.loads(states[-2].read_text()) if len(states) > 1 else {"trial_data": []}
        for trial_json, runtime_json in state.get("trial_data", []):
            info, runtime = json.loads(trial_json), json.loads(runtime_json)
            trial_dir = path / info.get("relative_logdir", "")
            error = None
            if runtime.get("error_filename"):
                error_file = trial_dir / runtime["error_filename"]
                error = _error_reason(error_file.read_text()) if error_file.exists() else "failed"
            config = info.get("config") if isinstance(info.get("config"), dict) else {}
            trials[info["trial_id"]] = Trial(info["trial_id"], info.get("status", "PENDING"), config,
                                             trial_dir, _read_history(trial_dir), error)
    # Trials that started after the last state save exist only as folders.
    for params in sorted(path.glob("trial_*/params.json")):
        trial_dir = params.parent
        history = _read_history(trial_dir)
        trial_id = history[0].get("trial_id") if history else trial_dir.name.removeprefix("trial_")
        if trial_id in trials:
            continue
        trials[trial_id] = Trial(trial_id, RUNNING, json.loads(params.read_text()), trial_dir, history)
    return Experiment(path, meta, sorted(trials.values(), key=lambda t: t.trial_id))
