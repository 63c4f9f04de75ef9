"""The readers stay linear and lean as an experiment grows, counted rather
than timed (the figures at 5,000 trials are in BENCHMARKS.md, "Readers at
scale"): every file is read once, a result row holds no copy of its
trial's config, and ranking never compares trials with each other."""

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from tune_pipeline.experiment import Trial, load_experiment
from tune_pipeline.export import best_trial_rows, export, grouped_rows
from tune_pipeline.report import build_report

from fake_experiment import make_experiment

GRID = {"learning_rate": [0.001, 0.003, 0.01, 0.03, 0.1], "optimizer": ["sgd", "adamw"], "seed": [0, 1, 2, 3]}
TRIALS = 40


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory) -> Path:
    # Stopped early, failed, and a trial that started after the last state save.
    statuses = {3: ("TERMINATED", 1), 7: ("ERROR", 2), 9: ("RUNNING", 1)}
    return make_experiment(tmp_path_factory.mktemp("scale"), GRID, epochs=4, statuses=statuses)


@pytest.fixture
def opened(monkeypatch) -> Counter:
    """Every file opened for reading, by path: pathlib's reads go through io.open."""
    counts: Counter = Counter()
    real_open = io.open

    def counting(file, mode="r", *args, **kwargs):
        if "r" in mode and not isinstance(file, int):
            counts[Path(file)] += 1
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting)
    monkeypatch.setattr("builtins.open", counting)
    return counts


def test_each_file_is_read_once(experiment_dir, opened):
    experiment = load_experiment(experiment_dir)
    assert len(experiment.trials) == TRIALS
    state_files = list(experiment_dir.glob("experiment_state-*.json"))
    results = list(experiment_dir.glob("trial_*/result.json"))
    assert len(results) == TRIALS and len(state_files) == 1
    assert all(opened[path] == 1 for path in [*results, *state_files]), opened
    assert max(opened.values()) == 1, [p for p, n in opened.items() if n > 1]
    # The state file lists every trial: no params.json is opened to learn a config.
    assert not [p for p in opened if p.name == "params.json"]


def test_a_trial_started_after_the_last_state_save_is_read_from_its_folder_once(tmp_path, opened):
    path = make_experiment(tmp_path, GRID, epochs=2)
    state_file = next(path.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    state["trial_data"] = state["trial_data"][1:]  # the first trial is only a folder
    state_file.write_text(json.dumps(state))
    opened.clear()
    experiment = load_experiment(path)
    assert len(experiment.trials) == TRIALS and experiment.trials[0].config["learning_rate"] == 0.001
    assert max(opened.values()) == 1
    assert [p.parent.name for p in opened if p.name == "params.json"] == ["trial_ab12c_00000"]


def test_rows_hold_no_copy_of_the_config(experiment_dir):
    experiment = load_experiment(experiment_dir)
    rows = [row for trial in experiment.trials for row in trial.history]
    assert len(rows) > TRIALS and not [row for row in rows if "config" in row]
    assert all(len(t.config) > len(GRID) for t in experiment.trials)  # the whole config, kept once


def test_the_state_file_is_read_whole_or_not_at_all(tmp_path):
    """Streamed entry by entry, a state file cut anywhere is still damaged as a
    whole (the older one is read), never half taken."""
    path = make_experiment(tmp_path, GRID, epochs=2)
    state_file = next(path.glob("experiment_state-*.json"))
    text = state_file.read_text()
    newer = path / "experiment_state-2026-01-02_00-00-00.json"
    for cut in (len(text) // 2, len(text) - 3):
        newer.write_text(text[:cut])
        experiment = load_experiment(path)
        assert len(experiment.trials) == TRIALS
        assert experiment.notes == [f"skipped damaged {newer.name}; read {state_file.name} "
                                    f"(trials it does not list are read from their folders)"]


@pytest.fixture
def comparisons(monkeypatch) -> list:
    """Each time two trials are compared with ==."""
    seen = []

    def counting(self, other):
        seen.append(1)
        return self is other

    monkeypatch.setattr(Trial, "__eq__", counting)
    monkeypatch.setattr(Trial, "__hash__", object.__hash__)
    return seen


def test_ranking_never_compares_trials(experiment_dir, comparisons, tmp_path):
    """`t not in ranked` compared every trial with every other: 12.5 million
    comparisons of whole trials at 5,000."""
    experiment = load_experiment(experiment_dir)
    rows = best_trial_rows(experiment)
    assert len(rows) == TRIALS
    grouped_rows(experiment)
    export(experiment, "csv", tmp_path / "best.csv")
    assert len(comparisons) == 0
    build_report(experiment, top=5)  # the plots look each trial up among the 5 they highlight
    assert len(comparisons) <= 5 * TRIALS


def test_epochs_run_again_after_a_resume_replace_the_first_run(tmp_path):
    """A driver killed between two state saves resumes its trial from an
    older checkpoint: result.json then holds those epochs twice."""
    path = make_experiment(tmp_path, {"learning_rate": [0.1]}, epochs=3)
    results = next(path.glob("trial_*/result.json"))
    lines = results.read_text().splitlines()
    rerun = [json.dumps({**json.loads(line), "test_accuracy": 0.99}) for line in lines[1:]]
    results.write_text("\n".join(lines + rerun) + "\n")  # epochs 1 2 3, then 2 3 again
    history = load_experiment(path).trials[0].history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [row["test_accuracy"] for row in history][1:] == [0.99, 0.99]


def test_rows_ray_writes_with_nan_and_infinity_read_as_json_reads_them(tmp_path):
    """The fast parser refuses NaN and Infinity, which Ray writes (a loss that
    diverged); such a file is read by json, whole, not dropped."""
    import math

    from tune_pipeline.experiment import _read_history

    rows = [{"training_iteration": 1, "train_loss": 2.3, "val_accuracy": 0.1},
            {"training_iteration": 2, "train_loss": float("nan"), "val_accuracy": float("-inf")}]
    (tmp_path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    history = _read_history(tmp_path)
    assert [h["training_iteration"] for h in history] == [1, 2]
    assert math.isnan(history[1]["train_loss"]) and history[1]["val_accuracy"] == float("-inf")
