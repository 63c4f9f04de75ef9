"""What a trial keeps of its checkpoints (`tune.checkpoints`), and the disk
a sweep says it needs before it starts."""

import io
from pathlib import Path

import pytest
import torch

from tune_pipeline import retention
from tune_pipeline.errors import UserError
from tune_pipeline.models import list_models
from tune_pipeline.space import load_space

from conftest import digits_config, mounted_tmpfs, write_sweep


def invoke(*args):
    """The CLI in this process, as test_robustness runs it."""
    from typer.testing import CliRunner

    from tune_pipeline.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]

SCORES = [0.3, 0.9, 0.5, 0.7, 0.4]  # val_accuracy by epoch: epoch 2 best, then 4, 3, 5, 1


def test_each_outcome_keeps_one_word_or_what_its_own_key_says(tmp_path):
    for given, expected in ((None, {"finished": "best", "stopped": "best", "failed": "best"}),
                            ("latest", {"finished": "latest", "stopped": "latest", "failed": "latest"}),
                            (3, {"finished": 3, "stopped": 3, "failed": 3}),
                            ({"stopped": "none", "failed": "latest"},
                             {"finished": "best", "stopped": "none", "failed": "latest"})):
        tune = {} if given is None else {"checkpoints": given}
        space = load_space(write_sweep(tmp_path, {"epochs": {"value": 1}}, tune=tune))
        assert space.checkpoints == expected
        assert space.resolved()["tune"]["checkpoints"] == expected  # what `tune resume` rebuilds from


def test_bad_settings_are_all_named_at_once(tmp_path):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}},
                        tune={"checkpoints": {"finished": 0, "stopped": "some", "crashed": "none", "failed": True}})
    with pytest.raises(UserError) as caught:
        load_space(space)
    named = [next(k for k in ("finished", "stopped", "crashed", "failed") if f"tune.checkpoints.{k}:" in p)
             for p in caught.value.problems]
    assert sorted(named) == ["crashed", "failed", "finished", "stopped"], caught.value.problems


@pytest.fixture
def manager(tmp_path):
    """Ray's own checkpoint manager, as a sweep configures it, after five epochs."""
    from ray.train import Checkpoint
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    manager = _CheckpointManager(retention.checkpoint_config("val_accuracy", "max"))
    for epoch, score in enumerate(SCORES, 1):
        folder = tmp_path / f"checkpoint_{epoch - 1:06d}"
        folder.mkdir()
        manager.register_checkpoint(_TrainingResult(Checkpoint(str(folder)), {"val_accuracy": score, "epoch": epoch}))
    assert len(list(tmp_path.iterdir())) == len(SCORES)  # Ray deletes nothing: the pruner does
    return manager


def epochs_of(paths) -> list[int]:
    return sorted(int(Path(p).name.split("_")[1]) + 1 for p in paths)


@pytest.mark.parametrize("setting, epochs", [("best", [2]), (2, [2, 4]), ("latest", [5]), ("all", [1, 2, 3, 4, 5]),
                                             ("none", [])])
def test_an_ended_trial_keeps_what_its_setting_says(manager, setting, epochs, tmp_path):
    retention.prune(manager, setting)
    assert epochs_of(tmp_path.glob("checkpoint_*")) == epochs
    assert epochs_of(r.checkpoint.path for r in manager._checkpoint_results) == epochs  # it forgot the rest
    latest = manager.latest_checkpoint_result
    assert (latest is None) == (not epochs)
    if latest is not None:  # the manager's latest is one that exists
        assert Path(latest.checkpoint.path).exists()


@pytest.mark.parametrize("setting, epochs", [("latest", [5]), ("none", [])])
def test_a_checkpoint_ray_never_recorded_goes_when_its_trial_has_ended(manager, setting, epochs, tmp_path):
    """Stopped by the scheduler while its next epoch was being saved, a trial
    leaves that checkpoint, whose result Ray drops: seen in a full run as a
    `latest` trial keeping two."""
    import pyarrow.fs

    (tmp_path / "checkpoint_000005").mkdir()
    (tmp_path / "checkpoint_000005" / "state.pt").write_bytes(b"epoch 6")
    (tmp_path / "result.json").write_text("")
    retention.prune(manager, setting)
    removed = retention.remove_strays(manager, pyarrow.fs.LocalFileSystem(), str(tmp_path))
    assert [Path(p).name for p in removed] == ["checkpoint_000005"]
    assert epochs_of(tmp_path.glob("checkpoint_*")) == epochs and (tmp_path / "result.json").exists()


def test_a_running_trial_keeps_its_latest_and_what_the_last_saves_name(manager, tmp_path):
    saved = manager._checkpoint_results[0]  # epoch 1 (the worst): named by an earlier state save
    retention.prune(manager, retention.running_setting({"finished": "best", "stopped": "none", "failed": "none"}),
                    protect=[saved, manager.latest_checkpoint_result])
    assert epochs_of(tmp_path.glob("checkpoint_*")) == [1, 2, 5]
    assert manager.latest_checkpoint_result.metrics["epoch"] == 5  # resume continues from it


@pytest.mark.slow
@pytest.mark.parametrize("model", list_models())
def test_the_disk_estimate_is_a_real_checkpoints_size(model):
    """What --dry-run multiplies, against the checkpoint a trial writes."""
    from tune_pipeline.train import fit

    for optimizer in ("sgd", "adamw"):
        sizes = []

        def on_epoch(metrics, make_state):
            buffer = io.BytesIO()
            torch.save(make_state(), buffer)
            sizes.append(buffer.tell())

        fit(digits_config(32, 32, model=model, optimizer=optimizer, epochs=1, batch_size=32), on_epoch=on_epoch)
        estimate = retention.checkpoint_bytes(model, optimizer)
        assert sizes[0] <= estimate <= sizes[0] * 1.02 + 20_000, (optimizer, sizes[0], estimate)


def test_dry_run_says_the_disk_a_sweep_needs(tmp_path):
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.01, 0.1]}, "epochs": {"value": 3}},
                        tune={"checkpoints": {"finished": 2, "stopped": "none", "failed": "none"}})
    result = invoke("search", space, "--dry-run", "--storage-path", tmp_path / "results")
    assert result.exit_code == 0, result.output
    size = retention._size(retention.checkpoint_bytes("small_cnn", "sgd"))
    assert f"2 trials x 0-2 kept x {size}" in result.output
    assert "tune.checkpoints: finished: 2, stopped: none, failed: none" in result.output
    assert f"free in {tmp_path}" in result.output


@pytest.fixture
def small_fs(tmp_path):
    """A 100 MiB tmpfs: past the storage check's 64 MiB, short of 45 small_cnn checkpoints."""
    yield from mounted_tmpfs(tmp_path / "small", "size=100m")


def test_a_sweep_whose_checkpoints_cannot_fit_is_refused_before_it_starts(tmp_path, small_fs):
    values = [round(0.001 * (i + 1), 4) for i in range(45)]
    space = write_sweep(tmp_path, {"learning_rate": {"values": values}, "epochs": {"value": 1}})
    line = one_line_error(invoke("search", space, "--storage-path", small_fs, "--name", "e"))
    assert "45 trials x 1 kept" in line and f"free in {small_fs}" in line and "tune.checkpoints" in line
    assert list(small_fs.iterdir()) == []
    dry = invoke("search", space, "--storage-path", small_fs, "--dry-run")  # says so, and previews the rest
    assert dry.exit_code == 0 and "warning: checkpoints: up to" in dry.output and "not enough" in dry.output
    # Stopped trials keeping nothing could fit: a note, not a refusal.
    tune = {"checkpoints": {"finished": "best", "stopped": "none", "failed": "none"}}
    space = write_sweep(tmp_path, {"learning_rate": {"values": values}, "epochs": {"value": 1}}, tune=tune)
    result = invoke("search", space, "--storage-path", small_fs, "--dry-run")
    assert result.exit_code == 0 and "checkpoints may not fit" in result.output


@pytest.mark.slow
def test_a_sweep_keeps_what_each_outcome_says(asha_experiment):
    """The shared ASHA sweep keeps the default: each trial its best epoch's
    checkpoint alone, whether it finished, was stopped or failed."""
    from tune_pipeline.experiment import load_experiment

    path, result = asha_experiment
    assert result.returncode == 1, result.stdout + result.stderr  # one trial diverges
    experiment = load_experiment(path)
    states = set()
    for trial in experiment.trials:
        kept = sorted(p.name for p in trial.path.glob("checkpoint_*"))
        scored = [(row["val_accuracy"], row["epoch"], row["checkpoint_dir_name"]) for row in trial.history
                  if row.get("checkpoint_dir_name")]
        assert kept == ([max(scored)[2]] if scored else []), (trial.trial_id, kept, scored)
        states.add(experiment.state(trial))
    assert {"finished", "stopped early", "failed"} <= states


@pytest.mark.slow
def test_outcomes_keep_their_own_setting(tmp_path):
    from conftest import TINY, run_tune
    from tune_pipeline.experiment import load_experiment

    space = write_sweep(tmp_path, {
        "learning_rate": {"values": [0.002, 0.005, 0.01, 0.03, 0.1, 1.0e12]},
        "lr_scheduler": {"value": "none"}, "epochs": {"value": 4}},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2, "max_iter": 4},
        tune={"checkpoints": {"finished": 2, "stopped": "latest", "failed": "none"}})
    done = run_tune("search", space, "--name", "kept", "--storage-path", tmp_path, *TINY,
                    "--set", "batch_size=16", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    experiment = load_experiment(tmp_path / "kept")
    seen = set()
    for trial in experiment.trials:
        state = experiment.state(trial)
        seen.add(state)
        kept = sorted(p.name for p in trial.path.glob("checkpoint_*"))
        rows = [(row["val_accuracy"], row["epoch"], row["checkpoint_dir_name"]) for row in trial.history]
        expected = {"finished": sorted(r[2] for r in sorted(rows)[-2:]),
                    "stopped early": [rows[-1][2]] if rows else [], "failed": []}[state]
        assert kept == expected, (trial.trial_id, state, kept, rows)
    assert {"finished", "stopped early", "failed"} <= seen


@pytest.mark.parametrize("model", list_models())
def test_the_readme_states_each_models_checkpoint(model):
    from conftest import ROOT

    readme = (ROOT / "docs" / "resources.md").read_text()
    row = next((line for line in readme.splitlines() if line.startswith(f"| `{model}` | ")
                and line.count("MB") >= 3), None)
    assert row, f"docs/resources.md's checkpoint table lacks {model}"
    sgd, adam = (float(cell.split()[0]) for cell in row.split("|")[3:5])
    assert sgd == pytest.approx(retention.checkpoint_bytes(model, "sgd") / 1e6, rel=0.01)
    assert adam == pytest.approx(retention.checkpoint_bytes(model, "adamw") / 1e6, rel=0.01)
