"""Population-based training: the block's checks, how values are drawn, a
change applied to the running optimizer, and a real PBT sweep on digits that
exploits, records each trial's schedule, and resumes after SIGKILL."""

import json
import random

import pytest

from tune_pipeline.errors import UserError
from tune_pipeline.pbt import (MUTABLE, REFUSED, SCHEDULE_KEY, describe_schedule, explore,
                               record_change, schedule_of)
from tune_pipeline.space import parse_space
from tune_pipeline.tune_adapter import check_tune
from tune_pipeline.train import fit

from conftest import ROOT, digits_config, kill_group, run_tune, start_tune, wait_until, write_sweep

PBT = {"type": "pbt", "perturbation_interval": 2}


def space_with(tmp_path, parameters, scheduler=PBT, **top):
    return parse_space({"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
                        "parameters": {"dataset": {"value": "digits"}, "epochs": {"value": 6}, **parameters},
                        "tune": {"num_samples": 4, "scheduler": scheduler}, **top}, tmp_path / "s.yaml")


def test_the_dry_run_builds_the_pbt_scheduler_the_run_builds(tmp_path):
    from tune_pipeline.pbt_scheduler import PbtScheduler

    space = space_with(tmp_path, {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-3, "max": 0.3},
                                  "optimizer": {"values": ["sgd", "adam"]}})
    scheduler = check_tune(space)["scheduler"]
    assert isinstance(scheduler, PbtScheduler)
    assert scheduler._perturbation_interval == 2 and scheduler._metric == "val_accuracy"
    # Only what a running optimizer can take is mutated by default; optimizer is copied, never changed.
    assert list(scheduler._hyperparam_mutations) == ["learning_rate"]
    # The space as resume rebuilds it keeps the block.
    again = parse_space(space.resolved(), tmp_path / "s.yaml")
    assert again.scheduler == space.scheduler


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_a_key_that_cannot_change_mid_run_is_refused_with_its_reason(tmp_path, key):
    with pytest.raises(UserError) as err:
        space_with(tmp_path, {"learning_rate": {"values": [0.01, 0.1]}}, {**PBT, "mutate": [key]})
    assert f"tune.scheduler.mutate: {key} cannot change mid-run: {REFUSED[key]}" in str(err.value)


def test_every_problem_of_a_pbt_block_at_once(tmp_path):
    with pytest.raises(UserError) as err:
        space_with(tmp_path, {"learning_rate": {"values": [0.01, 0.1]}},
                   {"type": "pbt", "perturbation_interval": 0, "quantile_fraction": 0.9,
                    "perturbation_factors": [], "mutate": ["momentum"], "extra": 1}, method="bayes")
    text = str(err.value)
    for part in ("tune.scheduler.extra: unknown key", "perturbation_interval: must be an integer >= 1",
                 "quantile_fraction: must be in (0, 0.5]", "perturbation_factors: must be a list",
                 "cannot run with method bayes", "momentum is not swept"):
        assert part in text
    with pytest.raises(UserError, match="no swept parameter can change mid-run"):
        space_with(tmp_path, {"optimizer": {"values": ["sgd", "adam"]}})
    with pytest.raises(UserError, match="no trial trains more than 6 epochs"):
        space_with(tmp_path, {"learning_rate": {"values": [0.01, 0.1]}}, {**PBT, "perturbation_interval": 6})


def test_explore_draws_from_the_space_and_stays_in_its_range(tmp_path):
    space = space_with(tmp_path, {"momentum": {"distribution": "uniform", "min": 0.8, "max": 0.99},
                                  "learning_rate": {"values": [0.1, 0.001, 0.01]}})
    mutate = {k: space.params[k] for k in space.scheduler["mutate"]}
    rng = random.Random(0)
    seen_lr = set()
    for _ in range(300):
        new, operations = explore({"momentum": 0.98, "learning_rate": 0.01}, mutate, rng, 0.25, [1.2, 0.8])
        assert 0.8 <= new["momentum"] <= 0.99  # 0.98 * 1.2 is clipped, never an invalid momentum
        assert new["learning_rate"] in (0.1, 0.001, 0.01)
        if operations["learning_rate"].startswith("shift"):  # a neighbour on the sorted axis
            seen_lr.add(new["learning_rate"])
    assert seen_lr == {0.001, 0.1}


def test_a_schedule_records_each_change_with_its_epoch():
    schedule = record_change([], 2, {"learning_rate": 0.01, "momentum": 0.9}, {"learning_rate": 0.02, "momentum": 0.9})
    schedule = record_change(schedule, 4, {"learning_rate": 0.02, "momentum": 0.9},
                             {"learning_rate": 0.02, "momentum": 0.8})
    assert schedule == [{"epoch": 0, "learning_rate": 0.01, "momentum": 0.9},
                        {"epoch": 2, "learning_rate": 0.02, "momentum": 0.9},
                        {"epoch": 4, "learning_rate": 0.02, "momentum": 0.8}]
    assert describe_schedule(schedule) == "learning_rate 0.01 -> 0.02 (epoch 2); momentum 0.9 -> 0.8 (epoch 4)"


def _groups(state):
    return state["optimizer"]["param_groups"][0]


def test_a_checkpoint_continued_with_new_values_changes_the_running_optimizer(digits):
    """What an exploit does in the trial: the top trial's checkpoint, this trial's new values."""
    base = dict(lr_scheduler="step", lr_step_size=1, lr_gamma=0.5, epochs=3, optimizer="sgd")
    saved = {}

    def keep(metrics, make_state):
        saved[metrics["epoch"]] = make_state()

    donor = fit(digits_config(256, 128, learning_rate=0.05, momentum=0.9, weight_decay=1e-4, **base),
                dataset=digits, on_epoch=keep)["history"]
    new = digits_config(256, 128, learning_rate=0.1, momentum=0.8, weight_decay=1e-3, **base)
    states = {}
    history = fit(new, dataset=digits, resume_state=saved[1],
                  on_epoch=lambda m, make_state: states.setdefault(m["epoch"], make_state()))["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # the donor's epoch 1, then this run's
    group = _groups(states[2])
    assert (group["momentum"], group["weight_decay"]) == (0.8, 1e-3)
    # The step schedule keeps its decays at twice the height: rescaled from epoch 1 on.
    assert history[1]["lr"] == pytest.approx(2 * donor[1]["lr"])
    assert history[2]["lr"] == pytest.approx(2 * donor[2]["lr"])
    assert schedule_of(history[2]) == [{"epoch": 0, "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
                                       {"epoch": 1, "learning_rate": 0.1, "momentum": 0.8, "weight_decay": 1e-3}]
    assert states[3]["schedule"] == schedule_of(history[2])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_schedule_trained_again_changes_values_at_its_epochs(digits, optimizer):
    """`tune train --from` a PBT trial: its schedule, from the start."""
    schedule = [{"epoch": 0, "learning_rate": 0.01, "momentum": 0.9},
                {"epoch": 2, "learning_rate": 0.03, "momentum": 0.8}]
    states = {}
    history = fit(digits_config(256, 128, learning_rate=0.01, momentum=0.9, epochs=3, lr_scheduler="none",
                                optimizer=optimizer), dataset=digits, schedule=schedule,
                  on_epoch=lambda m, make_state: states.setdefault(m["epoch"], make_state()))["history"]
    assert [h["lr"] for h in history] == pytest.approx([0.01, 0.01, 0.03])
    beta1 = lambda s: _groups(s)["betas"][0] if optimizer == "adam" else _groups(s)["momentum"]
    assert [beta1(states[e]) for e in (1, 2, 3)] == [0.9, 0.9, 0.8]
    assert states[3]["config"]["learning_rate"] == 0.03  # a resumed run continues from here


def test_every_mutable_key_is_a_training_key_with_a_reason_and_none_is_also_refused():
    from tune_pipeline.config import FIELDS

    assert set(MUTABLE) <= set(FIELDS) and not set(MUTABLE) & set(REFUSED)
    assert set(MUTABLE) | set(REFUSED) == set(FIELDS)  # every key is decided, none by accident


def test_the_shipped_pbt_space_explains_itself():
    from typer.testing import CliRunner

    from tune_pipeline.cli import app

    result = CliRunner().invoke(app, ["search", str(ROOT / "search_spaces" / "pbt.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "scheduler pbt (every 3 epochs" in result.stdout


# ------------------------------------------------------------ a real PBT sweep

def _rows(trial_dir):
    path = trial_dir / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(600)  # two sweeps and a SIGKILL: 67 s in a loaded full run
def test_pbt_sweep_exploits_records_the_schedule_and_resumes_after_sigkill(tmp_path):
    epochs = 12
    space = write_sweep(tmp_path, {
        "learning_rate": {"values": [0.0005, 0.003, 0.02, 0.1]}, "lr_scheduler": {"value": "none"},
        "epochs": {"value": epochs}},
        tune={"scheduler": {"type": "pbt", "perturbation_interval": 1, "quantile_fraction": 0.5,
                            "resample_probability": 0.0}})
    env = {"TUNE_PIPELINE_CACHE": str(tmp_path / "cache")}
    # Half a CPU each: the four trials of the population run at once on 2 cores.  Ray
    # saves its experiment state at every step (not every 10 s), so the kill below
    # finds a state that knows the exploit and every trial's checkpoints.
    driver = start_tune("search", space, "--name", "pbt", "--storage-path", tmp_path, "--cpus-per-trial", "0.5",
                        "--set", "max_train_images=256", "--set", "max_test_images=128", "--set", "batch_size=16",
                        cwd=tmp_path, env={**env, "TUNE_GLOBAL_CHECKPOINT_S": "0"}, start_new_session=True)
    experiment = tmp_path / "pbt"

    def exploited_and_saved_early():
        policy = experiment / "pbt_global.txt"
        states = list(experiment.glob("experiment_state-*.json"))
        return (policy.exists() and policy.read_text().strip() and states
                and max(p.stat().st_mtime for p in states) > policy.stat().st_mtime
                and max(len(_rows(d)) for d in experiment.glob("trial_*")) < epochs // 2)

    try:
        wait_until(exploited_and_saved_early, 300, "an exploit in the first half of the run, saved",
                   process=driver)
    finally:
        kill_group(driver)

    resumed = run_tune("resume", experiment, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    from tune_pipeline.experiment import load_experiment

    exp = load_experiment(experiment)
    assert exp.status_counts() == {"TERMINATED": 4}
    changed = []
    for trial in exp.trials:
        rows = _rows(trial.path)
        assert rows[-1]["epoch"] == epochs
        # Never restarted from scratch, and the checkpoint's epoch is Ray's iteration
        # through every exploit and the resume: each continued exactly.  (Rows the
        # driver had not yet copied to the experiment folder when it was killed can
        # be missing, about 1 run in 2 on a loaded machine: a gap, never a repeat.)
        assert sum(r["training_iteration"] == 1 for r in rows) <= 1
        assert all(r["epoch"] == r["training_iteration"] for r in rows)
        rates = [r["config"]["learning_rate"] for r in rows]
        if len(set(rates)) > 1:
            changed.append(trial)
            after = rows[-1]
            # The running optimizer carries the config the row was trained with.
            assert after["lr"] == pytest.approx(after["config"]["learning_rate"])
            schedule = schedule_of(after)
            assert schedule and schedule[-1]["learning_rate"] == after["config"]["learning_rate"]
            assert all(0 < s["epoch"] < epochs for s in schedule[1:])
    assert changed, "no trial's config changed mid-run"

    status = run_tune("status", experiment)
    assert status.returncode == 0 and "pbt schedules:" in status.stdout
    assert f"{changed[0].trial_id}: learning_rate " in status.stdout
    export = run_tune("export", experiment, "--format", "json")
    rows = {r["trial_id"]: r for r in json.loads(export.stdout)}
    assert any(rows[t.trial_id][SCHEDULE_KEY] for t in changed)
    traced = next(t for t in changed if rows[t.trial_id][SCHEDULE_KEY])
    trained = run_tune("train", "--from", experiment, "--trial", traced.trial_id, "--epochs", "3",
                       "-o", tmp_path / "out", "--quiet", env=env)
    assert trained.returncode == 0, trained.stderr
    assert "following the schedule PBT found: learning_rate" in trained.stdout
