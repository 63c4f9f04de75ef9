"""`tune resume` from another folder finds the data the sweep was given by a
relative path: the experiment stores its space with absolute paths."""

import json

import pytest
import yaml

from tune_pipeline.experiment import load_experiment

from conftest import TINY, run_tune, write_cifar

pytestmark = pytest.mark.slow


def test_resume_from_another_folder_with_data_given_by_a_relative_path(tmp_path):
    work, spaces, elsewhere = tmp_path / "work", tmp_path / "spaces", tmp_path / "elsewhere"
    for folder in (work, spaces, elsewhere):
        folder.mkdir()
    write_cifar(work / "mydata")  # beside the working directory, not beside the YAML file
    space = spaces / "space.yaml"
    space.write_text(yaml.safe_dump({
        "method": "grid", "metric": {"name": "test_accuracy", "goal": "maximize"},
        "parameters": {"dataset": {"value": "cifar10"}, "data_dir": {"value": "mydata"},
                       "model": {"value": "small_cnn"}, "epochs": {"value": 1},
                       "learning_rate": {"values": [0.05]}}}))
    env = {"TUNE_PIPELINE_CACHE": str(tmp_path / "cache")}
    first = run_tune("search", space, "--name", "rel", "--storage-path", work / "results", *TINY,
                     cwd=work, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    experiment_dir = work / "results" / "rel"
    meta = json.loads((experiment_dir / "tune_pipeline.json").read_text())
    assert meta["resolved_space"]["parameters"]["data_dir"] == {"value": str(work / "mydata")}

    again = run_tune("resume", experiment_dir, cwd=elsewhere, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Traceback" not in again.stderr and not (elsewhere / "mydata").exists()
    assert load_experiment(experiment_dir).status_counts() == {"TERMINATED": 1}
