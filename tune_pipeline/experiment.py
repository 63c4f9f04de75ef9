"""Reading an experiment from disk, with no Ray running: Ray Tune's state
file for each trial's status and config, each trial's result.json for its
epochs, and our record of what the sweep was (experiment_record.py).  Works
on finished, interrupted and still-running experiments."""

from __future__ import annotations

import codecs
import gc
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tune_pipeline.errors import UserError
from tune_pipeline.experiment_record import ExperimentRecord, read_record
from tune_pipeline.metrics import best_of, oriented
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


try:  # optional: 3.8x json's speed on result rows (BENCHMARKS.md, "Readers at 5,000 trials")
    from orjson import JSONDecodeError as _FastError
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - a dependency, but the readers work without it
    _fast_loads, _FastError = None, ValueError


def _loads(text: str):
    """json.loads, by orjson where it is installed.  orjson refuses NaN and
    Infinity, which Ray writes (a diverged loss, a time never set): such a
    text is parsed by json, as before."""
    if _fast_loads is not None:
        try:
            return _fast_loads(text)
        except _FastError:
            pass
    return json.loads(text)


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
        rows = _loads("[" + text.rstrip("\n").replace("\n", ",") + "]")
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


# The Ray minor version whose private experiment_state-*.json layout this
# reader knows (pyproject pins Ray to it).  A half-written file is skipped;
# a whole file in another layout is a format change: one line naming it.
# Ray's public reader (ray.tune.ExperimentAnalysis) needs Ray imported (2.6 s
# CPU, 780 MB), reads a bucket only through Ray's own sync, unpickles, and
# holds every trial's full entry at once; the readers here (status, export,
# plots, the report) import no Ray and stream the file.  All knowledge of the
# layout is in this section, from here to _entry_record.
RAY_FORMAT_TESTED = "2.60"


def _format_changed(source, key: str) -> UserError:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = f"Ray {version('ray')} is installed"  # the package's metadata: no import of Ray
    except PackageNotFoundError:
        installed = "Ray is not installed"
    return UserError(f"{source}: {key}: not in the layout this tool reads (Ray {RAY_FORMAT_TESTED}; "
                     f"{installed}); install the Ray version pyproject.toml names")


def _state_files(path: Path) -> list[Path]:
    """Oldest first, by the start time in the name (a resumed sweep writes a new
    file): modification times do not order them, Ray's final sync touches all."""
    return sorted(path.glob("experiment_state-*.json"), key=lambda p: p.name)


def ray_state_saved(path) -> bool:
    """Whether Ray saved an experiment state: an experiment whose driver died
    before that (in its first second or so, after tune_pipeline.json and
    Ray's tuner.pkl) never started; `tune resume` starts it."""
    return bool(_state_files(location(path)))


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


def _read_state(path: Path, notes: list[str]) -> tuple[list, Path | None]:
    """The trial entries (`_entry_record`s, None for an unreadable one) of
    the newest state file that reads whole, and that file; a damaged newer
    one is named in `notes` so a fallback is never silent."""
    states = _state_files(path)
    skipped = []
    for state_file in reversed(states):
        try:
            with state_file.open("rb") as stream:
                entries = _state_entries(stream, state_file)
        except OSError:
            entries = None
        if entries is None:  # cut short or unreadable
            skipped.append(state_file.name)
            continue
        if skipped:
            notes.append(f"skipped damaged {', '.join(skipped)}; read {state_file.name} "
                         f"(trials it does not list are read from their folders)")
        return entries, state_file
    if skipped:
        notes.append(f"skipped damaged {', '.join(skipped)}; trials read from their folders")
    return [], None


# Ray writes its state file with json.dump's default separators, trial_data first.
_STATE_HEAD = '{"trial_data": ['
_STATE_CHUNK = 1 << 22
_SPACE = re.compile(r"\s*")


class _Text:
    """A file's text read a chunk at a time, for a parser that keeps its place."""

    def __init__(self, stream):
        self.stream, self.text, self.pos, self.done = stream, "", 0, False
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def more(self) -> bool:
        """Append the next chunk (dropping what was parsed); False at the end."""
        if self.done:
            return False
        data = self.stream.read(_STATE_CHUNK)
        self.done = not data
        self.text = self.text[self.pos:] + self.decoder.decode(data, final=self.done)
        self.pos = 0
        return True

    def skip_space(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            self.pos = _SPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos:self.pos + 1]

    def rest(self) -> str:
        while self.more():
            pass
        return self.text[self.pos:]


def _state_entries(stream, source) -> list | None:
    """The trial entries of one state file, each reduced to what we read
    (`_entry_record`) as soon as it is parsed, so the file's strings are never
    all held at once (Ray's entry is about 30 KB per trial: 160 MB at 5,000);
    None when the file is damaged anywhere, as a whole-file parse would say."""
    decoder = json.JSONDecoder()
    text = _Text(stream)
    while len(text.text) < len(_STATE_HEAD) and text.more():
        pass
    if not text.text.startswith(_STATE_HEAD):  # another layout: the whole file at once
        try:
            state = json.loads(text.rest())
        except (ValueError, RecursionError):
            return None
        if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list):
            raise _format_changed(source, "trial_data")
        return [_entry_record(entry) for entry in state["trial_data"]]
    text.pos = len(_STATE_HEAD)
    entries = []
    char = text.skip_space()
    while char not in ("]", ""):
        while True:
            try:
                entry, text.pos = decoder.raw_decode(text.text, text.pos)
                break
            except (ValueError, RecursionError):
                if not text.more():  # damaged, not merely cut by the chunk
                    return None
        entries.append(_entry_record(entry))
        char = text.skip_space()
        if char != ",":
            break
        text.pos += 1
        char = text.skip_space()
    if char != "]":
        return None
    text.pos += 1
    rest = text.rest().strip()  # the runner's own data: small, checked whole
    try:
        tail = json.loads("{" + rest[1:]) if rest.startswith(",") else None if rest != "}" else {}
    except (ValueError, RecursionError):
        return None
    return entries if isinstance(tail, dict) else None


# Ray's run metadata is written with indent 2, the error file's name among its
# first keys: found there without parsing the rest (the bulk: every metric's
# analysis and the pickled checkpoint manager), else by a full parse.
_ERROR_FILENAME = re.compile(r'^  "error_filename": (null|"(?:[^"\\]|\\.)*")', re.MULTILINE)


def _entry_record(entry) -> tuple[dict, str | None] | None:
    """(the trial's JSON state, its error file's name or None), or None when
    the entry is not in the layout we know."""
    try:
        trial_json, runtime_json = entry
        info = _loads(trial_json)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("trial_id"), str) or not isinstance(runtime_json, str):
        return None
    match = _ERROR_FILENAME.search(runtime_json, 0, 4096)
    try:
        runtime = {"error_filename": json.loads(match.group(1))} if match else json.loads(runtime_json)
    except (ValueError, RecursionError):
        return None
    error_file = runtime.get("error_filename") if isinstance(runtime, dict) else None
    info = {k: info.get(k) for k in ("trial_id", "status", "config", "relative_logdir")}  # the rest is dropped
    return info, str(error_file) if error_file else None


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
    entries, state_file = _read_state(path, notes)
    lost = set(record.lost_trials)  # rerun under new ids: the reruns are the trials
    unread = 0
    for entry in entries:
        trial = _trial_from_state(path, entry)
        if trial is None:
            unread += 1
        elif trial.trial_id not in lost:
            trials[trial.trial_id] = trial
    if unread and unread == len(entries):  # not one entry in the layout we know: Ray's format changed
        raise _format_changed(state_file, "trial_data[]: [trial JSON with trial_id, runtime JSON]")
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
