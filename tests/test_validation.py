"""Choosing on validation data: the split, the val_* metrics, what plateau
watches, the sweep's default metric, and the metric facts they all read."""

import math
import shutil

import pytest
import torch
import yaml

from tune_pipeline import metrics
from tune_pipeline.config import validate_config
from tune_pipeline.data import (DataError, Dataset, dataset_key, load_for_config,
                                stratified_split, with_validation)
from tune_pipeline.errors import UserError
from tune_pipeline.space import load_space
from tune_pipeline.train import _Runner, fit

from conftest import digits_config, write_image_folder


def small(**overrides):
    return digits_config(256, 64, **overrides)


# ---------------------------------------------------------------- the split

def test_split_is_stratified_disjoint_and_covers_the_training_set(digits):
    split = with_validation(digits, 0.1, 0)
    n = len(digits.train_labels)
    assert len(split.train_labels) + len(split.val_labels) == n
    for c in range(10):
        in_class = int((digits.train_labels == c).sum())
        held = int((split.val_labels == c).sum())
        assert held == round(0.1 * in_class)  # every class in proportion
    held = stratified_split(digits.train_labels, 0.1, 0)
    kept = set(range(n)) - set(held.tolist())
    assert torch.equal(split.val_images, digits.train_images[held])
    assert torch.equal(split.train_images, digits.train_images[sorted(kept)])  # disjoint, nothing lost
    assert split.test_labels is digits.test_labels  # the test set is untouched


def test_split_depends_on_val_seed_only(digits):
    a = stratified_split(digits.train_labels, 0.1, 0)
    assert torch.equal(a, stratified_split(digits.train_labels, 0.1, 0))  # deterministic
    assert not torch.equal(a, stratified_split(digits.train_labels, 0.1, 1))
    # Trials differ in seed (and everything else swept); they hold out the same images.
    one = load_for_config(small(seed=0, learning_rate=0.1))
    other = load_for_config(small(seed=7, learning_rate=0.01, max_train_images=64))
    assert torch.equal(one.val_labels, other.val_labels) and torch.equal(one.val_images, other.val_images)
    assert dataset_key(small(seed=0)) == dataset_key(small(seed=7))
    assert dataset_key(small(val_seed=0)) != dataset_key(small(val_seed=1))


def test_split_survives_the_object_store_and_is_not_made_twice(digits):
    split = with_validation(digits, 0.1, 0)
    again = Dataset.from_arrays(split.to_arrays())  # what a trial (or a resumed sweep) receives
    assert torch.equal(again.val_images, split.val_images) and torch.equal(again.train_labels, split.train_labels)
    assert with_validation(again, 0.1, 0).val_labels is again.val_labels  # a trial does not split again


def test_image_folder_val_split_is_used_and_trains_when_off(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=6)
    shutil.copytree(root / "test", root / "val")  # val/ beside test/, 2 per class
    loaded = load_for_config(validate_config({"dataset": "imagefolder", "data_dir": str(root)}))
    assert len(loaded.val_labels) == 6 and len(loaded.train_labels) == 18 and len(loaded.test_labels) == 6
    assert "val/" in loaded.extra["validation"]
    off = load_for_config(validate_config({"dataset": "imagefolder", "data_dir": str(root), "val_fraction": 0}))
    assert off.val_labels is None and len(off.train_labels) == 24


def test_too_few_images_for_a_split_is_a_user_error():
    one_each = Dataset("tiny", torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.arange(3),
                       torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.arange(3), ["a", "b", "c"],
                       (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(DataError, match="val_fraction: 0"):
        with_validation(one_each, 0.1, 0)


# ---------------------------------------------------------------- the loop

def test_every_epoch_reports_validation_metrics(digits):
    history = fit(small(), dataset=digits)["history"]
    for m in history:
        for key in metrics.REPORTED_METRICS:
            assert key in m and math.isfinite(m[key]), key
    assert history[-1]["best_val_accuracy"] == max(m["val_accuracy"] for m in history)
    assert history[-1]["best_val_loss"] == min(m["val_loss"] for m in history)


def test_no_validation_metrics_without_a_split(digits):
    history = fit(small(val_fraction=0, epochs=1), dataset=digits)["history"]
    assert not any(k in history[0] for k in metrics.VALIDATION_METRICS)


@pytest.mark.parametrize("val_fraction,decays", [(0.1, True), (0.0, False)])
def test_plateau_watches_the_validation_loss(digits, monkeypatch, val_fraction, decays):
    """Validation loss rising while test loss falls: plateau must decay the
    rate when it watches validation, and only then."""
    def scripted(self, split="test"):
        loss = 1.0 + self.epoch if split == "val" else 1.0 / (1 + self.epoch)
        return {f"{split}_loss": loss, f"{split}_accuracy": 0.5}

    monkeypatch.setattr(_Runner, "evaluate", scripted)
    cfg = small(lr_scheduler="plateau", lr_patience=0, epochs=3, val_fraction=val_fraction,
                max_train_images=64)
    lrs = [m["lr"] for m in fit(cfg, dataset=digits)["history"]]
    assert (lrs[-1] < cfg["learning_rate"]) == decays, lrs


# ---------------------------------------------------------------- metric facts

@pytest.mark.parametrize("name", list(metrics.METRICS))
def test_every_metric_has_one_goal_and_one_format(name):
    metric = metrics.METRICS[name]
    assert metric.goal in (metrics.MAX, metrics.MIN)
    shown = metrics.fmt(name, 0.8125)
    assert shown.endswith("%") == (metric.kind == "fraction")
    assert metrics.fmt(name, None) == "-"


def test_selection_notes_name_the_data():
    assert metrics.selection_note("val_accuracy") == "selected on validation data"
    assert metrics.selection_note("best_val_loss") == "selected on validation data"
    assert metrics.selection_note("test_accuracy") == "selected on test data"
    assert metrics.selection_note("best_test_loss") == "selected on test data"


def test_the_quoted_number_is_test_accuracy_at_the_selected_epoch():
    history = [{"val_accuracy": 0.7, "test_accuracy": 0.90},  # the test peak: not chosen
               {"val_accuracy": 0.8, "test_accuracy": 0.75},
               {"val_accuracy": 0.8, "test_accuracy": 0.60}]  # a tie keeps the earlier epoch
    assert metrics.quoted_accuracy(history, "val_accuracy", "max") == 0.75
    assert metrics.quoted_accuracy(history, "test_accuracy", "max") == 0.90
    assert metrics.quoted_accuracy([], "val_accuracy", "max") is None


# ---------------------------------------------------------------- the sweep's metric

def space_file(tmp_path, **top):
    data = {"method": "grid", "parameters": {"dataset": {"value": "digits"},
                                             "learning_rate": {"values": [0.1, 0.01]}}, **top}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_sweep_selects_on_validation_accuracy_by_default(tmp_path):
    space = load_space(space_file(tmp_path))
    assert (space.metric, space.mode) == ("val_accuracy", "max")


def test_without_a_split_the_default_falls_back_to_test_accuracy(tmp_path):
    space = load_space(space_file(tmp_path), ["val_fraction=0"])
    assert (space.metric, space.mode) == ("test_accuracy", "max")


def test_a_validation_metric_without_a_split_is_refused(tmp_path):
    path = space_file(tmp_path, metric={"name": "val_loss", "goal": "minimize"})
    with pytest.raises(UserError, match="val_loss needs a validation split"):
        load_space(path, ["val_fraction=0"])


@pytest.mark.parametrize("val_fraction", [0.0, 0.2])
def test_an_interrupted_runs_summary_reads_its_metrics_back_as_numbers(tmp_path, digits, val_fraction):
    """A run that stops early gets its summary from metrics.csv: the numbers
    come back as numbers and an empty val column means no validation split."""
    from tune_pipeline.run_output import RunDirectory

    cfg = small(val_fraction=val_fraction, epochs=2)
    run = RunDirectory(tmp_path / "run")
    run.start(cfg, [])
    fit(cfg, dataset=digits, on_epoch=lambda m, make_state: run.record_epoch(m, make_state()))
    summary = run.finish(run.partial_result(), status="interrupted")
    expected = "val_accuracy" if val_fraction else "test_accuracy"
    assert summary["selection_metric"] == expected and summary["epochs"] == 2
    assert isinstance(summary[metrics.QUOTED], float) and 0 <= summary[metrics.QUOTED] <= 1
    assert isinstance(summary["best_test_accuracy"], float)
    assert ("best_val_accuracy" in summary) == bool(val_fraction)
