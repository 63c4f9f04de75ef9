"""The experiment's record (tune_pipeline.json): one typed record, written
and read in the file's one layout; files of every format `tune resume`
still takes read back; damaged ones are one line."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from tune_pipeline.errors import UserError
from tune_pipeline.experiment import load_experiment
from tune_pipeline.experiment_record import (_KINDS, METADATA_FILE, RESUME_FORMAT, ExperimentRecord,
                                             load_space_from_meta, read_record, write_record)
from tune_pipeline.space import load_space

from conftest import write_sweep
from fake_experiment import make_experiment

# The file's keys as `tune search` has written them since resume_format 2:
# existing experiments are read by these names.
LAYOUT = ["name", "storage_path", "space_file", "space", "resolved_space", "dataset_key", "overrides", "method",
          "metric", "mode", "target", "swept", "repeats", "repeat_key", "scheduler", "resources",
          "max_concurrent_trials", "num_samples", "trial_count", "checkpoints", "wandb", "wandb_project",
          "created", "resume_format", "transform_scripts"]


def sweep_record(tmp_path, **top) -> ExperimentRecord:
    space = load_space(write_sweep(tmp_path, {"learning_rate": {"values": [0.1, 0.01]}, "epochs": {"value": 2}},
                                   **top))
    return ExperimentRecord.for_sweep(space, name="exp", storage_path=str(tmp_path), resources={"cpu": 1.0, "gpu": 0.0},
                                      max_concurrent_trials=None, overrides=["epochs=2"], wandb=False,
                                      wandb_project=None, transform_scripts={})


def test_every_field_has_its_kind_in_the_file():
    assert set(_KINDS) == {f.name for f in fields(ExperimentRecord)} - {"extra"}


def test_a_sweeps_record_is_its_space_and_reads_back_whole(tmp_path):
    record = sweep_record(tmp_path, metric={"name": "val_accuracy", "goal": "maximize", "target": 0.9})
    assert (record.method, record.metric, record.mode, record.target) == ("grid", "val_accuracy", "max", 0.9)
    assert record.trial_count == 2 and record.swept == ["learning_rate"] and record.resume_format == RESUME_FORMAT
    write_record(tmp_path, record)
    on_disk = json.loads((tmp_path / METADATA_FILE).read_text())
    assert set(LAYOUT) <= set(on_disk)  # the layout older readers and tests' fake experiments share
    again = read_record(tmp_path)
    assert again == ExperimentRecord.from_json(json.loads(json.dumps(record.to_json())), "x")
    assert again.metric == "val_accuracy" and again.resources == {"cpu": 1.0, "gpu": 0.0}
    assert load_space_from_meta(again).trial_count() == 2


def test_a_record_with_few_keys_reads_with_defaults_and_keeps_keys_it_does_not_know(tmp_path):
    record = ExperimentRecord.from_json({"name": "x", "metric": "test_accuracy", "someone_elses": [1]}, "f")
    assert record.trial_count is None and record.swept == [] and record.resume_format == 1
    assert record.to_json()["someone_elses"] == [1]


@pytest.mark.parametrize("text, says", [
    ("[1, 2]", "damaged (not a complete JSON object)"),
    ('{"name": "x", "trial_count": "3", "swept": "lr"}', "bad swept (not a list), trial_count (not a int)"),
    ('{"name": "x", "trial_count": true}', "bad trial_count (not a int)"),
    ('{"name": "x", "resume_format": 99}', "resume_format 99: written by a newer tune_pipeline"),
    ('{"name": "x", "metric": "val', "damaged (not a complete JSON object)"),
])
def test_a_damaged_or_newer_record_is_one_line_naming_the_file(tmp_path, text, says):
    (tmp_path / METADATA_FILE).write_text(text)
    with pytest.raises(UserError) as caught:
        read_record(tmp_path)
    line = caught.value.one_line()
    assert line.startswith(str(tmp_path / METADATA_FILE)) and says in line and "\n" not in line
    notes = []
    assert read_record(tmp_path, notes) == ExperimentRecord() and says in notes[0]  # readers go on


def test_a_typo_in_a_field_is_an_error_not_a_silent_none(tmp_path):
    experiment = load_experiment(make_experiment(tmp_path, {"learning_rate": [0.1, 0.01]}))
    assert experiment.record.trial_count == 2
    with pytest.raises(AttributeError):
        experiment.record.trial_cuont  # noqa: B018


def test_the_oldest_format_resumes_with_the_scheduler_it_ran(tmp_path):
    """Before the resolved space was stored: Tune settings top-level in `space`,
    the scheduler the sweep ran (--scheduler may have chosen it) in `scheduler`."""
    space_file = tmp_path / "space.yaml"
    raw = {"metric": {"name": "val_accuracy", "goal": "maximize"}, "num_samples": 2,
           "scheduler": {"type": "fifo"},
           "parameters": {"dataset": {"value": "digits"}, "epochs": {"value": 4},
                          "learning_rate": {"values": [0.1, 0.01]}}}
    for ran in ("asha", "fifo"):
        record = ExperimentRecord.from_json({"name": "old", "space_file": str(space_file), "space": raw,
                                             "scheduler": {"type": ran}, "num_samples": 3}, "old")
        space = load_space_from_meta(record)
        assert space.scheduler["type"] == ran and space.num_samples == 3 and space.method == "grid"
