"""The experiment's record and creation: `ExperimentRecord`, what a sweep was
(tune_pipeline.json, one typed record read and written here only); the
experiment's name and folder (made atomically, where a sweep can write and
has room); the transform scripts' text kept in the record; and what `tune
resume` checks of a record before trusting it (the keys it needs, the
resume format) and reads back (the search space as it was)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tune_pipeline.errors import UserError
from tune_pipeline.storage import check_folder_path, is_uri, location

if TYPE_CHECKING:
    from tune_pipeline.space import SearchSpace

METADATA_FILE = "tune_pipeline.json"
# The record's version, kept as "resume_format".  2 marks experiments whose
# random draws Ray saves with its search state (tune_adapter._wandb_draw) and whose
# bayes searcher takes back rerun trials (searcher.py).  Older ones cannot be
# resumed safely (check_resume_format); a newer one is refused by from_json.
RESUME_FORMAT = 2
MIN_FREE_BYTES = 64 << 20  # below this a sweep's first checkpoints fill the disk mid-run
_EDITED = "`tune search` wrote it whole, so it was edited or damaged since"


@dataclass
class ExperimentRecord:
    """What a sweep was: tune_pipeline.json, whose keys are these fields'
    names.  A file from an older version, or one cut by hand, may lack any
    of them: None (or empty) then; `check_resumable` names those `tune
    resume` cannot do without."""
    name: str | None = None
    storage_path: str | None = None
    space_file: str | None = None
    space: dict | None = None           # the file as the user wrote it
    # Every path absolute, every default filled: `tune resume` works from any
    # folder.  Absent from the oldest records, whose Tune settings were in
    # `space` and whose scheduler is `scheduler` (load_space_from_meta).
    resolved_space: dict | None = None
    dataset_key: list | None = None
    overrides: list = field(default_factory=list)  # --set, as given
    method: str | None = None
    metric: str | None = None
    mode: str | None = None
    target: float | None = None        # wandb's metric.target
    swept: list = field(default_factory=list)
    repeats: int = 1
    repeat_key: str | None = None
    scheduler: dict | None = None      # the space's, as parsed ({"type": ...})
    resources: dict | None = None      # one trial's, as the sweep ran it
    max_concurrent_trials: int | None = None
    num_samples: int | None = None
    trial_count: int | None = None     # Ray creates trials lazily: the sweep's count
    checkpoints: dict | None = None
    wandb: bool = False
    wandb_project: str | None = None
    created: str | None = None
    resume_format: int = 1             # the record's version (before the key: 1)
    transform_scripts: dict | None = None  # {name: origin, sha256, source}: what every trial runs
    added: list = field(default_factory=list)            # `tune resume --more`'s additions
    replaced_trials: list = field(default_factory=list)  # failed trials rerun by --restart-errored
    lost_trials: list = field(default_factory=list)  # trials a resume ran again under new ids (sweep.py)
    search_rebuilt: bool = False  # resumes build the search from the trials on disk (extend.py)
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they were

    @classmethod
    def for_sweep(cls, space: SearchSpace, *, name: str, storage_path: str, resources: dict,
                  max_concurrent_trials: int | None, overrides, wandb: bool, wandb_project: str | None,
                  transform_scripts: dict) -> ExperimentRecord:
        """The record of a sweep that starts now: what the space says, and the run's own choices."""
        from tune_pipeline.data import dataset_key
        from tune_pipeline.config import REPEAT_KEY

        return cls(
            name=name, storage_path=storage_path, space_file=str(space.source), space=space.raw,
            resolved_space=space.resolved(), dataset_key=list(dataset_key(space.fixed)),
            overrides=list(overrides), method=space.method, metric=space.metric, mode=space.mode,
            target=space.target, swept=space.swept(), repeats=space.repeats,
            repeat_key=REPEAT_KEY if space.repeats > 1 else None, scheduler=space.scheduler,
            resources=resources, max_concurrent_trials=max_concurrent_trials, num_samples=space.num_samples,
            trial_count=space.trial_count(), checkpoints=dict(space.checkpoints), wandb=wandb,
            wandb_project=wandb_project or space.project, created=datetime.now().isoformat(timespec="seconds"),
            resume_format=RESUME_FORMAT, transform_scripts=transform_scripts)

    @property
    def scheduler_type(self) -> str | None:
        return (self.scheduler or {}).get("type")

    def to_json(self) -> dict:
        """The file's layout: every field under its own name, unknown keys as read."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data, source) -> ExperimentRecord:
        """The record `data` (a parsed tune_pipeline.json) holds, of any format
        this version resumes; a damaged file, a value of the wrong kind, or a
        newer format is one UserError naming `source`."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: damaged (not a complete JSON object)")
        wrong = [f"{key} (not a {_KIND_NAMES[key]})" for key, kinds in _KINDS.items()
                 if data.get(key) is not None and not _is_kind(data[key], kinds)]
        if wrong:
            raise UserError(f"{source}: bad {', '.join(wrong)}: {_EDITED}")
        version = data.get("resume_format") or 1
        if version > RESUME_FORMAT:
            raise UserError(f"{source}: resume_format {version}: written by a newer tune_pipeline (this one "
                            f"reads up to {RESUME_FORMAT}); read it with that version")
        given = {key: data[key] for key in _KINDS if data.get(key) is not None}
        return cls(**given, extra={k: v for k, v in data.items() if k not in _KINDS})


# The kind of each field's value in the file (None, for an optional one, is always allowed).
_KINDS = {"name": str, "storage_path": str, "space_file": str, "space": dict, "resolved_space": dict,
          "dataset_key": list, "overrides": list, "method": str, "metric": str, "mode": str,
          "target": (int, float), "swept": list, "repeats": int, "repeat_key": str, "scheduler": dict,
          "resources": dict, "max_concurrent_trials": int, "num_samples": int, "trial_count": int,
          "checkpoints": dict, "wandb": bool, "wandb_project": str, "created": str, "resume_format": int,
          "transform_scripts": dict, "added": list, "replaced_trials": list,
          "lost_trials": list, "search_rebuilt": bool}
_KIND_NAMES = {key: "number" if isinstance(kind, tuple) else kind.__name__ for key, kind in _KINDS.items()}


def _is_kind(value, kinds) -> bool:
    if isinstance(value, bool) and kinds is not bool:  # JSON's true is no count
        return False
    return isinstance(value, kinds)


def read_record(path, notes: list[str] | None = None) -> ExperimentRecord:
    """The experiment's tune_pipeline.json.  Damaged: a UserError, or, when the
    caller collects `notes` (readers of a live or crashed experiment), an empty
    record and a note."""
    meta_file = location(path) / METADATA_FILE
    if not meta_file.exists():
        raise UserError(f"{path}: not a tune_pipeline experiment (no {METADATA_FILE}); "
                        f"pass the folder `tune search` printed")
    try:
        data = json.loads(meta_file.read_text(errors="replace"))
    except (OSError, ValueError, RecursionError):
        data = None  # unreadable or half-written
    try:
        return ExperimentRecord.from_json(data, meta_file)
    except UserError as exc:
        if notes is None:
            raise
        notes.append(f"{exc.one_line()}; metric, mode and swept keys unknown")
        return ExperimentRecord()


def experiment_name(space: SearchSpace, name: str | None) -> str:
    if name:
        return name
    stem = space.name or space.source.stem
    return f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"


def resolve_storage(storage_path: str | Path) -> str:
    return str(location(storage_path))


def check_name(name: str) -> None:
    """An experiment name is one folder inside the storage path, never a path."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or name != name.strip()):
        raise UserError(f"--name: {name!r} must be a plain folder name (no '/', not '.' or '..')")


def check_storage(storage: str, option: str = "--storage-path") -> None:
    """A local storage path that can hold an experiment: a folder (or one that
    can be made) where a file can be written, with free space left."""
    if is_uri(storage):  # what Ray does first, but here as one line, before Ray starts
        probe = location(storage) / f".tune-write-probe-{os.getpid()}"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"{option}: cannot write to {storage} ({str(exc).splitlines()[0]})") from None
        return
    existing = check_folder_path(storage, option)
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".tune-write-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{option}: cannot write in {existing} ({exc.strerror or exc})") from None
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"{option}: {existing} has {free / 2**20:.1f} MiB free; a sweep needs "
                        f"at least {MIN_FREE_BYTES >> 20} MiB for its checkpoints")


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


def write_record(experiment_dir, record: ExperimentRecord) -> None:
    """Atomically: readers of a live experiment never see half of it (an
    object store's writes are whole objects already)."""
    text = json.dumps(record.to_json(), indent=2, default=str) + "\n"
    try:
        if not isinstance(experiment_dir, Path):
            (experiment_dir / METADATA_FILE).write_text(text)
            return
        tmp = experiment_dir / f".{METADATA_FILE}.tmp{os.getpid()}"
        tmp.write_text(text)
        tmp.replace(experiment_dir / METADATA_FILE)
    except OSError as exc:
        raise UserError(f"{experiment_dir}: cannot write {METADATA_FILE} ({exc.strerror or exc})") from None


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


# What `tune resume` cannot do without.
RESUME_FIELDS = ("name", "space_file", "metric", "mode", "resources", "trial_count")


def check_resumable(record: ExperimentRecord, experiment_dir) -> None:
    """A tune_pipeline.json edited or cut by hand is one line naming the keys, not a KeyError."""
    needed = RESUME_FIELDS + (("resolved_space",) if record.resolved_space is not None else ("space", "scheduler"))
    missing = [key for key in needed if getattr(record, key) is None]
    if missing:
        raise UserError(f"{experiment_dir / METADATA_FILE}: no {', '.join(missing)}: {_EDITED}; "
                        f"cannot resume without it")


def check_resume_format(experiment_dir, record: ExperimentRecord, restart_errored: bool) -> None:
    """Refuse what Ray would resume wrongly: experiments made before their
    search state held everything a resume needs (RESUME_FORMAT)."""
    if record.resume_format >= RESUME_FORMAT:
        return
    space = record.resolved_space or {}
    drawn = [k for k, v in (space.get("parameters") or {}).items()
             if isinstance(v, dict) and "distribution" in v and v["distribution"] != "categorical"]
    if record.method == "random" and drawn:
        raise UserError(f"{experiment_dir}: this random search was started by an older tune_pipeline, "
                        f"whose draws of {', '.join(drawn)} Ray cannot restore (its remaining trials would "
                        f"get placeholders instead of values); its trials so far stay readable (tune export "
                        f"{experiment_dir}); start the rest as a new sweep")
    if record.method == "bayes" and restart_errored:
        raise UserError(f"{experiment_dir}: this bayes search was started by an older tune_pipeline, whose "
                        f"searcher cannot take back rerun trials; resume it without --restart-errored")


def load_space_from_meta(record: ExperimentRecord) -> SearchSpace:
    """The search space as it was when the sweep started (the file may have
    changed since, and the working directory too: its paths were stored absolute)."""
    from tune_pipeline.space import parse_space

    if record.resolved_space is not None:
        # Scripts run from the recorded text (recorded_scripts), wherever the files are now.
        return parse_space(record.resolved_space, Path(record.space_file),
                           check_paths=record.transform_scripts is None)
    # Experiments from before the resolved space was stored: their Tune settings
    # were top-level, and the scheduler they ran (--scheduler may have chosen it)
    # is the record's.
    raw = {"method": "grid", **record.space}
    raw["tune"] = {k: raw.pop(k) for k in ("resources", "max_concurrent_trials", "num_samples", "scheduler")
                   if k in raw}
    space = parse_space(raw, Path(record.space_file), record.overrides)
    ran = record.scheduler_type
    if ran in ("asha", "fifo") and ran != space.scheduler["type"]:
        space = parse_space(raw, Path(record.space_file), record.overrides, scheduler=ran)
    if record.num_samples is not None:
        space.num_samples = record.num_samples
    return space
