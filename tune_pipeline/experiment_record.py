"""The experiment's creation and record: its name and folder (made
atomically, where a sweep can write and has room), tune_pipeline.json written
whole, the transform scripts' text kept in it, and what `tune resume` checks
of it before trusting it (every key it reads, the resume format) and reads
back (the search space as it was)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from tune_pipeline.experiment import METADATA_FILE
from tune_pipeline.errors import UserError
from tune_pipeline.space import SearchSpace, parse_space, with_scheduler
from tune_pipeline.storage import location

# tune_pipeline.json's "resume_format": 2 marks experiments whose random draws
# Ray saves with its search state (space._wandb_draw) and whose bayes searcher
# takes back rerun trials (searcher.py).  Older ones cannot be resumed safely.
RESUME_FORMAT = 2
MIN_FREE_BYTES = 64 << 20  # below this a sweep's first checkpoints fill the disk mid-run


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


def load_space_from_meta(meta: dict) -> SearchSpace:
    """The search space as it was when the sweep started (the file may have
    changed since, and the working directory too: its paths were stored absolute)."""
    if "resolved_space" in meta:
        # Scripts run from the recorded text (recorded_scripts), wherever the files are now.
        return parse_space(meta["resolved_space"], Path(meta["space_file"]), build=False,
                           check_paths="transform_scripts" not in meta)
    # Experiments from before the resolved space was stored: their Tune settings were top-level.
    raw = {"method": "grid", **meta["space"]}
    raw["tune"] = {k: raw.pop(k) for k in ("resources", "max_concurrent_trials", "num_samples", "scheduler")
                   if k in raw}
    space = parse_space(raw, Path(meta["space_file"]), meta.get("overrides", []), build=False)
    space.num_samples = meta.get("num_samples", space.num_samples)
    return with_scheduler(space, meta["scheduler"]["type"])
