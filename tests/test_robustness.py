"""Hostile and careless input, without Ray: every case is one line and exit 2
(bad input) or a recorded failure, never a traceback.  The
sweep-level ones that need Ray are in test_robustness_ray.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tune_pipeline import augment
from tune_pipeline.cli import app
from tune_pipeline.config import load_config_file, read_yaml, validate_config
from tune_pipeline.errors import UserError
from tune_pipeline.lock import LOCK_FILE, STALE_AFTER_S, ExperimentLock

from conftest import mounted_tmpfs, write_image_folder, write_sweep

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    # A traceback is an exception other than the SystemExit typer raises for an exit code.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


# ---------------------------------------------------------------- 1. one driver per experiment

def _holder(host: str, pid: int) -> dict:
    return {"host": host, "pid": pid, "started": "2026-01-01T00:00:00", "command": "tune search"}


def test_a_live_holder_refuses_a_second_driver_naming_it(tmp_path):
    with ExperimentLock(tmp_path, "tune search"):
        with pytest.raises(UserError, match=rf"another driver .*pid {os.getpid()} on {socket.gethostname()}"):
            ExperimentLock(tmp_path, "tune resume").acquire()
    assert not (tmp_path / LOCK_FILE).exists()  # released on exit


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps(_holder(socket.gethostname(), dead.pid)))
    with ExperimentLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()


def test_a_lock_from_another_node_holds_while_its_heartbeat_is_fresh(tmp_path):
    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps(_holder("other-node", 1)))
    with pytest.raises(UserError, match="other-node"):
        ExperimentLock(tmp_path).acquire()
    old = time.time() - STALE_AFTER_S - 5
    os.utime(path, (old, old))  # the other node stopped beating
    with ExperimentLock(tmp_path) as lock:
        assert lock.holder()["host"] == socket.gethostname()


def test_release_leaves_a_lock_another_driver_took_over(tmp_path):
    lock = ExperimentLock(tmp_path).acquire()
    (tmp_path / LOCK_FILE).write_text(json.dumps(_holder("other-node", 1)))
    lock.release()
    assert (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "/abs"])
def test_an_experiment_name_stays_inside_the_storage_path(tmp_path, name):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    result = invoke("search", space, "--name", name, "--storage-path", tmp_path / "store")
    assert "plain folder name" in one_line_error(result)
    assert not (tmp_path / "x").exists()


def test_an_existing_name_is_one_line_before_anything_starts(tmp_path):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    (tmp_path / "store" / "taken").mkdir(parents=True)
    result = invoke("search", space, "--name", "taken", "--storage-path", tmp_path / "store")
    assert "already exists" in one_line_error(result)


def test_creating_the_experiment_folder_is_atomic(tmp_path):
    from tune_pipeline.experiment_record import create_experiment_dir

    create_experiment_dir(str(tmp_path), "x")
    with pytest.raises(UserError, match="already exists"):
        create_experiment_dir(str(tmp_path), "x")  # the loser of a race: no FileExistsError


# ---------------------------------------------------------------- 2. sweeps that never end

@pytest.mark.parametrize("resources", ["{cpu: .nan}", "{cpu: .inf}", "{gpu: .nan}"])
def test_non_finite_resources_are_refused_at_dry_run(tmp_path, resources):
    space = tmp_path / "s.yaml"
    space.write_text(f"method: grid\nparameters:\n  epochs: {{value: 1}}\nresources: {resources}\n")
    assert "finite" in one_line_error(invoke("search", space, "--dry-run"))


def test_cpus_per_trial_nan_is_refused(tmp_path):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    result = invoke("search", space, "--dry-run", "--cpus-per-trial", "nan")
    assert result.exit_code == 2


def test_check_resources_refuses_nan_overrides():
    from tune_pipeline.ray_session import check_resources

    with pytest.raises(UserError, match="finite"):
        check_resources({"cpu": float("nan"), "gpu": 0.0})
    check_resources({"cpu": 0.5, "gpu": 0.0})


def test_a_trial_larger_than_every_node_is_named():
    from tune_pipeline.ray_session import check_fits_cluster

    class FakeRay:  # two small nodes: together 4 CPUs, but a trial runs on one
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 2.0}},
                    {"Alive": False, "Resources": {"CPU": 64.0}}]

    with pytest.raises(UserError, match="a trial needs 3 CPUs; the largest node has 2"):
        check_fits_cluster(FakeRay, {"cpu": 3.0, "gpu": 0.0})
    with pytest.raises(UserError, match="a trial needs 1 GPUs; the largest node has 0"):
        check_fits_cluster(FakeRay, {"cpu": 1.0, "gpu": 1.0})
    check_fits_cluster(FakeRay, {"cpu": 2.0, "gpu": 0.0})


def test_rays_cannot_be_scheduled_warning_becomes_our_error():
    import logging

    from tune_pipeline.ray_session import RAY_RESOURCE_LOGGER, Unschedulable, unschedulable_is_an_error

    with unschedulable_is_an_error({"cpu": 64.0, "gpu": 0.0}):
        with pytest.raises(Unschedulable, match="a trial needs 64 CPUs"):
            logging.getLogger(RAY_RESOURCE_LOGGER).warning(
                "Ignore this message if the cluster is autoscaling. No trial is running ... "
                "This could be due to the cluster not having enough resources available. ...")
    logging.getLogger(RAY_RESOURCE_LOGGER).warning("cluster not having enough resources")  # removed again


def _hanging_script(folder: Path, where: str) -> Path:
    body = {"import": "import time\nwhile True:\n    time.sleep(0.02)\n",
            "train": ""}[where]
    script = folder / f"hang_{where}.py"
    script.write_text(body + (
        "import time\nfrom tune_pipeline import augment as A\n\n"
        "def train_transform(images, ctx):\n"
        + ("    while True:\n        time.sleep(0.02)\n" if where == "train" else "")
        + "    return A.normalize(images, ctx.mean, ctx.std)\n\n"
        "def test_transform(images, ctx):\n    return A.normalize(images, ctx.mean, ctx.std)\n"))
    return script


def test_a_script_that_hangs_at_import_has_a_time_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(augment, "IMPORT_TIMEOUT_S", 0.5)
    script = _hanging_script(tmp_path, "import")
    space = write_sweep(tmp_path, {"runtime_transform_script": {"value": str(script)}})
    assert "did not finish importing within 0.5 s" in one_line_error(invoke("search", space, "--dry-run"))


def test_the_watchdog_stops_a_run_past_its_timeout():
    from tune_pipeline.watchdog import TrialStalled, Watchdog

    def forever():
        while True:
            time.sleep(0.01)

    with pytest.raises(TrialStalled, match="trial_timeout: still running after 0.2 s"):
        Watchdog(0.2, stall_factor=0).run(forever)


def test_the_watchdog_stops_a_run_whose_epochs_stop_coming():
    from tune_pipeline.watchdog import TrialStalled, Watchdog

    dog = Watchdog(0, stall_factor=3, min_stall_s=0.1)

    def one_epoch_then_hang():
        time.sleep(0.05)
        dog.beat()  # one epoch done: the slowest so far sets the limit
        while True:
            time.sleep(0.01)

    with pytest.raises(TrialStalled, match="stalled: no progress"):
        dog.run(one_epoch_then_hang)


def test_the_watchdog_leaves_a_healthy_run_alone():
    from tune_pipeline.watchdog import Watchdog

    dog = Watchdog(60, stall_factor=10, min_stall_s=60)

    def healthy():
        for _ in range(3):
            time.sleep(0.01)
            dog.beat()
        return "done"

    assert dog.run(healthy) == "done" and dog.reason is None


TRAIN_CONFIG = {"max_train_images": 64, "max_test_images": 32, "batch_size": 32, "epochs": 1}


def _config(folder: Path, **keys) -> Path:
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump({**TRAIN_CONFIG, **keys}))
    return path


def test_train_past_its_trial_timeout_fails_with_a_summary(tmp_path):
    script = _hanging_script(tmp_path, "train")
    config = _config(tmp_path, runtime_transform_script=str(script), trial_timeout=1.0)
    result = invoke("train", config, "-o", tmp_path / "out", "-q")
    assert "trial_timeout" in one_line_error(result, code=1)
    summary = json.loads((tmp_path / "out" / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "trial_timeout" in summary["error"]


# ---------------------------------------------------------------- 3. storage

def test_a_storage_path_that_is_a_file(tmp_path):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    (tmp_path / "file").write_text("x")
    result = invoke("search", space, "--storage-path", tmp_path / "file" / "sub", "--name", "e")
    assert "is a file, not a folder" in one_line_error(result)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs (needs mount rights: root in a container that allows it)."""
    yield from mounted_tmpfs(tmp_path / "tiny", "size=1m")


def test_a_full_storage_is_refused_before_ray_starts(tmp_path, tiny_fs):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    result = invoke("search", space, "--storage-path", tiny_fs, "--name", "e")
    assert "MiB free" in one_line_error(result)
    assert not (tiny_fs / "e").exists()


def test_a_read_only_storage_is_refused_before_ray_starts(tmp_path, tiny_fs):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    # Read-only for root too (a chmod would not stop root).
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    result = invoke("search", space, "--storage-path", tiny_fs / "results", "--name", "e")
    assert "cannot write" in one_line_error(result)


def test_train_on_a_full_disk_is_one_line(tmp_path, tiny_fs):
    (tiny_fs / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # leave 64 KiB: not a checkpoint
    result = invoke("train", _config(tmp_path), "-o", tiny_fs, "-q")
    assert result.exit_code in (1, 2), result.output
    assert "No space left on device" in one_line_error(result, code=result.exit_code)


# ---------------------------------------------------------------- 4. readers of a live or crashed experiment

def _trial_json(trial_id: str, status: str, config: dict) -> list:
    return [json.dumps({"trial_id": trial_id, "status": status, "config": config,
                        "relative_logdir": f"trial_{trial_id}"}), json.dumps({})]


@pytest.fixture
def crashed_experiment(tmp_path) -> Path:
    """What a killed driver and a full disk leave: every file of ours and Ray's
    cut short somewhere, beside whole ones."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "tune_pipeline.json").write_text(json.dumps({
        "name": "exp", "metric": "test_accuracy", "mode": "max", "swept": ["learning_rate"],
        "trial_count": 3}))
    good = {"trial_data": [_trial_json("a", "TERMINATED", {"learning_rate": 0.1}),
                           ["not json", "{}"], 7]}
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(good))
    (exp / "experiment_state-2026-01-02_00-00-00.json").write_text(json.dumps(good)[:40])
    for trial_id, lr in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        folder = exp / f"trial_{trial_id}"
        folder.mkdir()
        rows = [{"trial_id": trial_id, "epoch": e, "test_accuracy": 0.5 + e * lr, "train_loss": 1.0 / e,
                 "test_loss": 1.0, "train_accuracy": 0.5, "config": {"learning_rate": lr}} for e in (1, 2)]
        lines = [json.dumps(r) for r in rows] + ["[1, 2]", "3", '{"epoch": 3, "test_acc']
        (folder / "result.json").write_text("\n".join(lines) + "\n")
        (folder / "params.json").write_text(json.dumps({"learning_rate": lr}))
    (exp / "trial_b" / "params.json").write_text('{"learning_ra')  # half-written
    (exp / "trial_c" / "params.json").write_text("")  # a full disk's 0-byte file
    return exp


def test_status_reads_a_crashed_experiment_and_says_what_it_skipped(crashed_experiment):
    result = invoke("status", crashed_experiment)
    assert result.exit_code == 0, result.output
    assert "exp: 3 trials;" in result.output
    assert "skipped damaged experiment_state-2026-01-02_00-00-00.json; read experiment_state-2026-01-01" \
        in result.output


@pytest.mark.parametrize("command", [["export"], ["export", "--format", "json"], ["plot"], ["report"]])
def test_every_reader_survives_a_crashed_experiment(crashed_experiment, command):
    result = invoke(command[0], crashed_experiment, *command[1:])
    assert result.exit_code == 0, result.output


def test_a_truncated_metadata_file_is_a_note_for_readers_and_an_error_for_resume(crashed_experiment):
    (crashed_experiment / "tune_pipeline.json").write_text('{"name": "ex')
    result = invoke("status", crashed_experiment)
    assert result.exit_code == 0 and "tune_pipeline.json: damaged" in result.output
    assert "damaged" in one_line_error(invoke("resume", crashed_experiment))


# ---------------------------------------------------------------- 5. validation holes in config.py

def test_duplicated_yaml_keys_are_an_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("method: grid\nparameters:\n  epochs: {value: 1}\n  epochs: {value: 2}\n")
    with pytest.raises(UserError, match="duplicated key 'epochs' \\(first on line 3\\)"):
        read_yaml(path)


def test_an_endless_file_is_not_read_forever():
    result = invoke("search", "/dev/zero", "--dry-run")
    assert "larger than" in one_line_error(result)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.5"])
@pytest.mark.parametrize("where", ["file", "set"])
def test_non_integer_floats_for_integer_keys(tmp_path, value, where):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 1\n" if where == "set" else f"epochs: {value}\n")
    with pytest.raises(UserError, match="epochs: must be an integer"):
        load_config_file(path, [f"epochs={value}"] if where == "set" else [])


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_non_integer_floats_in_search_and_train_are_one_line(tmp_path, value):
    space = write_sweep(tmp_path, {"epochs": {"value": 1}})
    assert "must be an integer" in one_line_error(invoke("search", space, "--dry-run", "--set", f"epochs={value}"))
    config = _config(tmp_path)
    assert "must be an integer" in one_line_error(
        invoke("train", config, "--set", f"batch_size={value}", "-o", tmp_path / "out"))


# ---------------------------------------------------------------- 6. transform scripts at validation

@pytest.mark.parametrize("body, says", [
    ("import sys\nsys.exit(0)\n", "exits at import (sys.exit(0))"),
    ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--foo', required=True)\np.parse_args()\n",
     "the following arguments are required: --foo"),
    ("raise SystemExit('bye')\n", "exits at import"),
])
def test_a_script_that_exits_at_import(tmp_path, body, says):
    script = tmp_path / "t.py"
    script.write_text(body)
    space = write_sweep(tmp_path, {"runtime_transform_script": {"value": str(script)}})
    line = one_line_error(invoke("search", space, "--dry-run", "--set", "epochs=1"))
    assert says in line


def test_a_script_sees_its_own_argv_not_ours(tmp_path):
    script = tmp_path / "t.py"
    script.write_text("import sys\nassert sys.argv == [__file__], sys.argv\n"
                      "def train_transform(images, ctx): return images\n"
                      "def test_transform(images, ctx): return images\n")
    validate_config({"runtime_transform_script": str(script)})


def test_a_missing_relative_script_names_every_place_looked(tmp_path):
    with pytest.raises(UserError, match=r"'nope\.py' does not exist \(looked in " + str(tmp_path)):
        validate_config({"runtime_transform_script": "nope.py"}, base_dirs=[tmp_path, tmp_path / "other"])


def test_a_folder_given_as_script_is_called_a_folder(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        validate_config({"runtime_transform_script": str(tmp_path)})


# ---------------------------------------------------------------- 7. output paths and bookkeeping

@pytest.fixture
def experiment(crashed_experiment):
    return crashed_experiment


@pytest.mark.parametrize("command, target", [
    ("export", "missing/best.md"), ("export", "."), ("export", "file/best.md"),
    ("report", "."), ("report", "file/r.html"), ("plot", "file"),
])
def test_output_paths_that_cannot_be_written_are_one_line(tmp_path, experiment, command, target, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    one_line_error(invoke(command, experiment, "-o", tmp_path / target))


def test_train_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_error(invoke("train", _config(tmp_path), "-o", tmp_path / "file"))


def test_an_unknown_export_extension_is_refused(tmp_path, experiment):
    assert "unknown extension '.xlsx'" in one_line_error(invoke("export", experiment, "-o", tmp_path / "best.xlsx"))
    assert not (tmp_path / "best.xlsx").exists()
    result = invoke("export", experiment, "-o", tmp_path / "best.txt", "--format", "csv")
    assert result.exit_code == 0 and (tmp_path / "best.txt").read_text().startswith("config,")


def _failing_script(folder: Path) -> Path:
    script = folder / "boom.py"
    script.write_text("def train_transform(images, ctx):\n    raise ValueError('boom in the transform')\n"
                      "def test_transform(images, ctx):\n    return images.float()\n")
    return script


def test_train_whose_transform_raises_writes_a_failed_summary(tmp_path):
    config = _config(tmp_path, runtime_transform_script=str(_failing_script(tmp_path)))
    line = one_line_error(invoke("train", config, "-o", tmp_path / "out", "-q"), code=1)
    assert "ValueError: boom in the transform" in line and "boom.py:2" in line
    summary = json.loads((tmp_path / "out" / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "boom in the transform" in summary["error"]


def test_overwrite_clears_the_old_run_first(tmp_path):
    old = tmp_path / "out" / "run"
    old.mkdir(parents=True)
    (old / "summary.json").write_text(json.dumps({"status": "finished", "epochs": 5}))
    (old / "checkpoint.pt").write_text("old")
    config = _config(tmp_path, runtime_transform_script=str(_failing_script(tmp_path)))
    invoke("train", config, "-o", tmp_path / "out", "-q", "--overwrite")
    assert json.loads((old / "summary.json").read_text())["status"] == "failed"
    assert not (old / "checkpoint.pt").exists()


def test_an_interrupted_run_says_so_in_its_summary(tmp_path):
    script = tmp_path / "ctrl_c.py"
    script.write_text("def train_transform(images, ctx):\n    raise KeyboardInterrupt\n"
                      "def test_transform(images, ctx):\n    return images.float()\n")
    result = invoke("train", _config(tmp_path, runtime_transform_script=str(script)), "-o", tmp_path / "out", "-q")
    assert result.exit_code == 130
    assert json.loads((tmp_path / "out" / "run" / "summary.json").read_text())["status"] == "interrupted"


def test_resume_with_set_is_refused_not_ignored(tmp_path):
    config = _config(tmp_path)
    assert "--set cannot change a resumed run" in one_line_error(
        invoke("train", config, "--resume", "--set", "epochs=2", "-o", tmp_path / "out"))


# ---------------------------------------------------------------- 8. data

def test_a_one_class_image_folder_is_an_error(tmp_path):
    from tune_pipeline.data import DataError, load_imagefolder

    write_image_folder(tmp_path / "data", classes=("cat",))
    with pytest.raises(DataError, match="one class .*at least 2"):
        load_imagefolder(tmp_path / "data")


def test_a_class_without_test_images_is_a_warning(tmp_path, capsys):
    from tune_pipeline.data import load_imagefolder

    root = write_image_folder(tmp_path / "data", classes=("cat", "dog", "frog"))
    for f in (root / "test" / "frog").iterdir():
        f.unlink()
    (root / "test" / "frog").rmdir()
    data = load_imagefolder(root)
    assert data.num_classes == 3
    assert "has no images of frog" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_an_undecodable_image_is_named_or_skipped_and_counted(tmp_path, capsys, damage):
    from tune_pipeline.data import DataError, load_imagefolder

    root = write_image_folder(tmp_path / "data")
    bad = root / "train" / "dog" / "0.jpg"
    bad.write_bytes(b"" if damage == "empty" else bad.read_bytes()[:40])
    with pytest.raises(DataError, match=f"cannot decode {bad}.*skip_bad_images"):
        load_imagefolder(root)
    data = load_imagefolder(root, skip_bad_images=True)
    assert len(data.train_labels) == 3 * 4 - 1
    assert "skipped 1 of" in capsys.readouterr().err


def test_a_grid_too_large_for_rays_resume_is_warned_about_at_dry_run(tmp_path):
    space = write_sweep(tmp_path, {
        "learning_rate": {"values": [0.001 * (i + 1) for i in range(101)]},
        "weight_decay": {"values": [0.0001 * i for i in range(100)]},
        "seed": {"values": list(range(100))}})
    result = invoke("search", space, "--dry-run")
    assert result.exit_code == 0 and "cannot be resumed" in result.output
