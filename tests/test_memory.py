"""What a trial holds of the dataset: the object store's arrays, read in
place (BENCHMARKS.md, "Memory per trial": a private copy was 184 MB of
CIFAR-10 per trial worker)."""

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
