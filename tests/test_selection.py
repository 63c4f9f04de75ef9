"""From a real sweep selected on validation data to a final model: the
numbers to quote, export's columns, `tune train --from` and loading its
weights as docs/outputs.md shows."""

import csv
import io
import json
import re

import pytest
import torch
import yaml

from tune_pipeline.config import validate_config
from tune_pipeline.experiment import load_experiment
from tune_pipeline.metrics import VALIDATION_METRICS

from conftest import ROOT, TINY, run_tune

pytestmark = pytest.mark.slow


def sweep(folder, name, *extra):
    """Two learning rates on digits; the file names no metric, so the default applies."""
    space = folder / f"{name}.yaml"
    space.write_text(yaml.safe_dump({"method": "grid", "parameters": {
        "dataset": {"value": "digits"}, "model": {"value": "small_cnn"}, "epochs": {"value": 2},
        "lr_scheduler": {"value": "none"}, "learning_rate": {"values": [0.05, 0.01]}}}))
    result = run_tune("search", space, "--name", name, "--storage-path", folder, *TINY, *extra, cwd=folder,
                      env={"TUNE_PIPELINE_CACHE": str(folder / "cache")})
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / name, result


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    return sweep(tmp_path_factory.mktemp("selected"), "sel")


def test_the_sweep_selects_on_validation_and_quotes_test_accuracy_at_the_selected_epoch(selected):
    experiment_dir, result = selected
    exp = load_experiment(experiment_dir)
    assert exp.metric == "val_accuracy" and exp.mode == "max"
    for trial in exp.trials:
        assert len(trial.history) == 2
        for row in trial.history:
            assert all(key in row for key in VALIDATION_METRICS)
    best = exp.best_trial()
    best_row = max(best.history, key=lambda h: h["val_accuracy"])  # max keeps the first of ties
    quoted = f"test_accuracy_at_best {best_row['test_accuracy']:.2%}"
    last_lines = result.stdout.strip().splitlines()[-3:]
    assert any(quoted in line and "selected on validation data" in line for line in last_lines), result.stdout

    report = run_tune("report", experiment_dir)
    assert report.returncode == 0, report.stderr
    assert quoted in report.stdout and "selected on validation data" in report.stdout


def test_export_keeps_the_original_columns_and_adds_the_honest_ones(selected):
    experiment_dir, _ = selected
    exp = load_experiment(experiment_dir)
    done = run_tune("export", experiment_dir, "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    columns = list(rows[0])
    assert columns[:8] == ["config", "best_train_accuracy", "best_test_accuracy", "best_loss", "best_test_loss",
                           "best_val_accuracy", "best_val_loss", "test_accuracy_at_best"]
    best_vals = [float(r["best_val_accuracy"]) for r in rows]
    assert best_vals == sorted(best_vals, reverse=True)  # ranked by the sweep's metric
    for row in rows:
        trial = next(t for t in exp.trials if t.trial_id == row["trial_id"])
        chosen = max(trial.history, key=lambda h: h["val_accuracy"])
        assert float(row["test_accuracy_at_best"]) == pytest.approx(chosen["test_accuracy"])
        assert float(row["best_test_accuracy"]) == pytest.approx(max(h["test_accuracy"] for h in trial.history))
    md = run_tune("export", experiment_dir)
    assert md.stdout.strip().splitlines()[-1].startswith("ranked by val_accuracy (highest first), "
                                                         "selected on validation data")


def readme_loading_lines() -> list[str]:
    block = re.search(r"```python\n(from tune_pipeline.run_output import load_model\n.*?)```",
                      (ROOT / "docs" / "outputs.md").read_text(), flags=re.S)
    assert block, "docs/outputs.md lacks the two lines that load a model"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    return lines


def test_train_from_reproduces_the_winner_and_its_weights_load_in_two_lines(selected, tmp_path):
    experiment_dir, _ = selected
    exp = load_experiment(experiment_dir)
    best = exp.best_trial()
    out = tmp_path / "out"
    done = run_tune("train", "--from", experiment_dir, "--epochs", "1", "-o", out, "-q",
                    env={"TUNE_PIPELINE_CACHE": str(experiment_dir.parent / "cache")})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"trial {best.trial_id}" in done.stdout and "selected on validation data" in done.stdout
    run = out / f"sel-{best.trial_id}"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved == {**validate_config(best.config), "epochs": 1}  # the winner's config, one change
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1

    path = run / "model.pt"
    lines = readme_loading_lines()
    scope = {}
    exec(re.sub(r'load_model\("[^"]+"\)', f"load_model({str(path)!r})", "\n".join(lines)), scope)
    model = scope["model"]
    state = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not model.training and model.classes == [str(d) for d in range(10)]
    assert model(torch.zeros(2, 3, model.input_size, model.input_size)).shape == (2, 10)

    other = next(t for t in exp.trials if t.trial_id != best.trial_id)
    full = run_tune("train", "--from", experiment_dir, "--trial", other.trial_id, "--full-train",
                    "--epochs", "1", "-o", out, "-q")
    assert full.returncode == 0, full.stdout + full.stderr
    saved = yaml.safe_load((out / f"sel-{other.trial_id}-full" / "config.yaml").read_text())
    assert saved["learning_rate"] == other.config["learning_rate"] and saved["val_fraction"] == 0

    missing = run_tune("train", "--from", experiment_dir, "--trial", "nope")
    assert missing.returncode == 2 and "no trial 'nope'" in missing.stderr


def test_without_a_split_every_ranking_says_selected_on_test_data(tmp_path):
    experiment_dir, result = sweep(tmp_path, "notest", "--set", "val_fraction=0")
    assert load_experiment(experiment_dir).metric == "test_accuracy"
    assert "selected on test data" in result.stdout.strip().splitlines()[-2]
    for command in (["export"], ["status"], ["report"]):
        shown = run_tune(*command, experiment_dir)
        assert shown.returncode == 0 and "selected on test data" in shown.stdout, command
