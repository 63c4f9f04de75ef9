"""What a trial holds of the dataset: the object store's arrays, read in
place (BENCHMARKS.md, "Memory per trial": a private copy was 184 MB of
CIFAR-10 per trial worker); what the driver keeps of an ended trial."""

import json

import numpy as np

from tune_pipeline.data import Dataset
from tune_pipeline.train import fit

from conftest import digits_config


def test_a_trial_trains_on_the_object_stores_arrays_without_copying_them(digits):
    arrays = digits.to_arrays()
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        arrays[key] = arrays[key].copy()
        arrays[key].flags.writeable = False  # as ray.get gives them: views of shared memory
    before = {key: arrays[key].copy() for key in ("train_images", "test_images")}
    data = Dataset.from_arrays(arrays)
    assert data.train_images.data_ptr() == arrays["train_images"].ctypes.data
    assert data.test_images.data_ptr() == arrays["test_images"].ctypes.data
    result = fit(digits_config(128, 64, epochs=1), dataset=data)
    assert len(result["history"]) == 1
    for key, copy in before.items():  # nothing wrote to them
        assert np.array_equal(arrays[key], copy)


def test_the_driver_keeps_of_an_ended_trial_only_its_metrics_analysis(asha_experiment):
    """Ray's max/min/average of every result key, per trial, was 15 of the 27
    KB each trial added to the state file Ray rewrites whole at every save,
    and about 50 KB of the driver's memory (BENCHMARKS.md, "The driver over a
    long sweep").  Finished and stopped trials keep the sweep's metric's alone
    (what Ray's own ranking reads); the trial that diverged in its first
    epoch reported nothing (the error path: tests/test_ended_trials.py)."""
    folder, result = asha_experiment
    assert result.returncode in (0, 1), result.stdout + result.stderr
    state_file = max(folder.glob("experiment_state-*.json"), key=lambda p: p.name)
    entries = json.loads(state_file.read_text())["trial_data"]
    statuses = []
    for trial_json, runtime_json in entries:
        status, runtime = json.loads(trial_json)["status"], json.loads(runtime_json)
        statuses.append(status)
        reported = "val_accuracy" in runtime["last_result"]
        assert set(runtime["metric_analysis"]) == set(runtime["metric_n_steps"]) == \
            ({"val_accuracy"} if reported else set())
        assert reported == (status == "TERMINATED")
    assert sorted(statuses) == ["ERROR"] + ["TERMINATED"] * 5
