"""What the driver prepares once for every trial: the dataset, decoded here
and shared through the object store; the transform scripts' text, read and
checked here (recorded with the experiment); the wrapped trainable that
`Tuner` and `Tuner.restore` both take."""

from __future__ import annotations

import contextlib

from tune_pipeline.config import EMBEDDED_DATASET
from tune_pipeline.errors import UserError
from tune_pipeline.experiment_record import METADATA_FILE, ExperimentRecord
from tune_pipeline.space import SearchSpace


def shared_dataset(space: SearchSpace, console=None) -> dict | None:
    """The dataset decoded once here, for every trial through the object store,
    when all trials train on the same data.  Loading it before Ray starts also
    makes a missing dataset a one-line error rather than a trial failure.  The
    validation split is made here too, so every trial holds out the same images."""
    from tune_pipeline.data import DATA_KEYS, dataset_key, load_for_config  # torch: not for a dry run

    if any(k in space.params for k in DATA_KEYS):
        return None  # trials differ in their data: each loads its own
    fixed = space.fixed
    where = "" if fixed["dataset"] == EMBEDDED_DATASET else f" from {fixed['data_dir']}"
    with console.phase(f"reading dataset {fixed['dataset']}{where}") if console else contextlib.nullcontext() as step:
        data = load_for_config(fixed)
        if step is not None:
            images = sum(len(t) for t in (data.train_labels, data.test_labels, data.val_labels) if t is not None)
            cache = {True: " (from the cache)", False: " (decoded; cached for the next sweep)"}.get(
                data.extra.get("cache_hit"), "")
            step.detail = f"{images:,} images{cache}"
        return {"key": dataset_key(fixed), "arrays": data.to_arrays()}


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


def recorded_scripts(record: ExperimentRecord, space: SearchSpace, console) -> dict:
    """The scripts a resumed sweep runs: the text recorded when it started,
    whatever the files hold now (a changed one is noted).  An experiment from
    before the record reads them now."""
    from tune_pipeline.augment import TransformScriptError, read_transform_script

    recorded = record.transform_scripts
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
