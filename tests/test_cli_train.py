import csv
import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.models import list_models

from conftest import ROOT, TRANSFORM_SCRIPTS, run_tune

QUICK = {"model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64,
         "max_train_images": 256, "max_test_images": 128}


def write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_tune_train_writes_the_run(tmp_path):
    cfg = write(tmp_path / "quick.yaml", QUICK)
    result = run_tune("train", cfg, "--output-dir", tmp_path / "out", "--set", "learning_rate=0.02")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "out" / "quick"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["learning_rate"] == 0.02 and saved["model"] == "small_cnn"
    assert saved["runtime_transform_script"] == "basic"  # a stock script, by its name
    assert saved["data_dir"].startswith("/")  # paths are made absolute
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert summary["best_test_accuracy"] == max(float(r["test_accuracy"]) for r in rows)
    assert (run / "checkpoint.pt").exists()
    assert "best test accuracy" in result.stdout

    again = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "out")])
    assert again.exit_code == 2 and "--resume" in again.output


def test_tune_train_resume_extends_nothing_and_keeps_history(tmp_path):
    cfg = write(tmp_path / "quick.yaml", dict(QUICK, epochs=1))
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(cfg), "-o", str(tmp_path / "out"), "-q"])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["train", str(cfg), "-o", str(tmp_path / "out"), "--resume", "-q"])
    assert resumed.exit_code == 0, resumed.output
    rows = list(csv.DictReader(open(tmp_path / "out" / "quick" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1"]  # a finished run resumes to done at once


BAD_INPUTS = {
    "unknown model": ({"model": "resnet19"}, "unknown model"),
    "unknown optimizer": ({"optimizer": "rmsprop"}, "optimizer: must be one of"),
    "unknown schedule": ({"lr_scheduler": "exponential"}, "lr_scheduler: must be one of"),
    "missing script": ({"runtime_transform_script": "nowhere.py"}, "does not exist"),
    "negative learning rate": ({"learning_rate": -0.1}, "learning_rate: must be > 0"),
    "unknown key": ({"learning_rat": 0.1}, "did you mean 'learning_rate'"),
    "wrong type": ({"epochs": "many"}, "epochs: must be an integer"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_exit_2_and_one_line(tmp_path, case):
    values, message = BAD_INPUTS[case]
    cfg = write(tmp_path / "bad.yaml", dict(QUICK, **values))
    result = CliRunner().invoke(app, ["train", str(cfg), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing started


def test_every_problem_is_reported_at_once(tmp_path):
    cfg = write(tmp_path / "bad.yaml", dict(QUICK, model="nope", learning_rate=-1, colour="red"))
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2
    assert "3 problems" in result.output
    for key in ("model", "learning_rate", "colour"):
        assert key in result.output
    assert str(cfg) in result.output


def test_broken_script_and_malformed_yaml(tmp_path):
    script = write(tmp_path / "broken.py", "raise RuntimeError('boom')\n")
    cfg = write(tmp_path / "bad.yaml", dict(QUICK, runtime_transform_script=str(script)))
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 2 and "failed to import: RuntimeError: boom" in result.output

    malformed = write(tmp_path / "malformed.yaml", "model: [small_cnn\nepochs: 2\n")
    result = CliRunner().invoke(app, ["train", str(malformed)])
    assert result.exit_code == 2 and "malformed YAML" in result.output
    assert len(result.output.strip().splitlines()) == 1

    result = CliRunner().invoke(app, ["train", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_relative_script_resolves_beside_the_yaml(tmp_path):
    shutil.copy(TRANSFORM_SCRIPTS[-1], tmp_path / "mine.py")
    cfg = write(tmp_path / "rel.yaml", dict(QUICK, epochs=1, runtime_transform_script="mine.py"))
    result = CliRunner().invoke(app, ["train", str(cfg), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "out" / "rel" / "config.yaml").read_text())
    assert saved["runtime_transform_script"] == str(tmp_path / "mine.py")


def test_diverging_run_exits_1_with_reason(tmp_path):
    cfg = write(tmp_path / "div.yaml", dict(QUICK, learning_rate=1.0e12, lr_scheduler="none"))
    result = CliRunner().invoke(app, ["train", str(cfg), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1 and "diverged" in result.output
    summary = json.loads((tmp_path / "out" / "div" / "summary.json").read_text())
    assert summary["status"] == "failed" and "diverged" in summary["error"]


def test_models_command_lists_every_model():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    for name in list_models():
        assert name in result.output
    assert "M parameters" in result.output


def test_console_script_is_ours_not_rays():
    tune = shutil.which("tune")
    assert tune is not None
    import subprocess
    out = subprocess.run([tune, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "models" in out.stdout


def test_python_dash_m_works():
    result = run_tune("--help")
    assert result.returncode == 0 and "train" in result.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    from tune_pipeline.config import load_config_file

    config = load_config_file(path)
    assert config["model"] in list_models()
    assert config["runtime_transform_script"] in ("basic", "advanced")  # stock: no checkout needed


# ---------------------------------------------------------------- tune train --from

def _sweep_with(tmp_path, statuses, timeout=0.5):
    from fake_experiment import make_experiment

    grid = {"learning_rate": [0.01, 0.02, 0.05], "trial_timeout": [timeout], "max_train_images": [64],
            "max_test_images": [32], "batch_size": [32]}
    return make_experiment(tmp_path, grid, name="sw", epochs=2, statuses=statuses)


def _ranked(experiment_dir):
    from tune_pipeline.experiment import load_experiment

    return load_experiment(experiment_dir).ranked()


def test_train_from_picks_the_best_finished_trial_and_drops_the_sweeps_timeout(tmp_path):
    experiment_dir = _sweep_with(tmp_path, {})
    best = _ranked(experiment_dir)[0]
    failed_index = int(best.trial_id.split("_")[1])
    experiment_dir = _sweep_with(tmp_path / "again", {failed_index: ("ERROR", 2)})  # the best one failed
    ranked = _ranked(experiment_dir)
    chosen = next(t for t in ranked if t.status == "TERMINATED")
    assert ranked[0].status == "ERROR" and chosen is not ranked[0]

    result = CliRunner().invoke(app, ["train", "--from", str(experiment_dir), "--epochs", "1",
                                      "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert f"trial {chosen.trial_id} (best finished by" in result.output
    assert "the sweep's trial_timeout of 0.5 s is not applied" in result.output
    saved = yaml.safe_load((tmp_path / "out" / f"sw-{chosen.trial_id}" / "config.yaml").read_text())
    assert saved["trial_timeout"] == 0 and saved["learning_rate"] == chosen.config["learning_rate"]

    kept = CliRunner().invoke(app, ["train", "--from", str(experiment_dir), "--epochs", "1", "--set",
                                    "trial_timeout=600", "-o", str(tmp_path / "kept"), "-q"])
    assert kept.exit_code == 0 and "not applied" not in kept.output, kept.output
    saved = yaml.safe_load((tmp_path / "kept" / f"sw-{chosen.trial_id}" / "config.yaml").read_text())
    assert saved["trial_timeout"] == 600


def test_train_from_a_sweep_where_nothing_finished_names_the_trial_to_pass(tmp_path):
    experiment_dir = _sweep_with(tmp_path, {0: ("ERROR", 1), 1: ("ERROR", 2), 2: ("RUNNING", 1)})
    best = _ranked(experiment_dir)[0]
    result = CliRunner().invoke(app, ["train", "--from", str(experiment_dir), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "no trial finished" in line
    assert f"--trial {best.trial_id}" in line and ("failed at epoch" in line or "interrupted at epoch" in line)


INTERRUPTED_AT_FIRST_BATCH = """\
from tune_pipeline import augment as A

def train_transform(images, ctx):
    raise KeyboardInterrupt  # Ctrl-C before the first epoch ends

def test_transform(images, ctx):
    return A.normalize(images, ctx.mean, ctx.std)
"""


def test_a_run_interrupted_before_its_first_epoch_keeps_its_validation_selection(tmp_path):
    script = write(tmp_path / "stop.py", INTERRUPTED_AT_FIRST_BATCH)
    cfg = write(tmp_path / "quick.yaml", dict(QUICK, runtime_transform_script=str(script), val_fraction=0.1))
    result = CliRunner().invoke(app, ["train", str(cfg), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 130, result.output
    summary = json.loads((tmp_path / "out" / "quick" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 0
    assert summary["selection"] == "selected on validation data"


@pytest.mark.slow
@pytest.mark.parametrize("config", [{}, {"dataset": "digits"}], ids=["empty", "digits"])
def test_the_defaults_train_a_working_model_where_a_new_user_starts(tmp_path, config):
    """Every key at its default (digits, the embedded dataset): config.DATASET_DEFAULTS."""
    result = run_tune("train", write(tmp_path / "first.yaml", config or ""), "--output-dir", tmp_path / "out",
                      "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "out" / "first" / "summary.json").read_text())
    assert summary["final"]["test_accuracy"] >= 0.90, summary["final"]
