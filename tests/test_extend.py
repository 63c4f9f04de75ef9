"""Sweeps that continue: `tune resume EXPERIMENT --more N` adds trials to the
same experiment (random never repeats a configuration; bayes starts from
every finished trial; a grid adds repeats)."""

import json
from types import SimpleNamespace

import pytest

from tune_pipeline.experiment import load_experiment
from tune_pipeline.experiment_record import ExperimentRecord, read_record
from tune_pipeline.extend import (GridRepeats, MoreTrials, _base, _finished_points, _searcher, configuration,
                                  find_lost_trials)
from tune_pipeline.lock import ExperimentLock
from tune_pipeline.space import parse_space
from tune_pipeline.tune_adapter import to_tune

from conftest import TINY, run_tune, write_sweep
from fake_experiment import QUICKSTART_GRID, make_experiment


@pytest.mark.slow
def test_a_finished_random_sweep_gets_three_more_trials_none_tried_before(tmp_path):
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.01, 0.02, 0.05, 0.1]},
                                   "momentum": {"values": [0.8, 0.9, 0.95]}, "epochs": {"value": 1}},
                        method="random", tune={"num_samples": 3})
    env = {"TUNE_PIPELINE_CACHE": str(tmp_path / "cache")}
    first = run_tune("search", space, "--name", "rand", "--storage-path", tmp_path, *TINY, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    experiment = tmp_path / "rand"
    before = {t.trial_id: configuration(t.config, ["learning_rate", "momentum"])
              for t in load_experiment(experiment).trials}

    more = run_tune("resume", experiment, "--more", "3", cwd=tmp_path, env=env)
    assert more.returncode == 0, more.stdout + more.stderr
    assert "added 3 trials: 6 trials in all" in more.stderr

    exp = load_experiment(experiment)
    assert len(exp.trials) == 6 and exp.status_counts() == {"TERMINATED": 6}
    added = [configuration(t.config, ["learning_rate", "momentum"]) for t in exp.trials if t.trial_id not in before]
    assert len(added) == 3 and len(set(added)) == 3 and not set(added) & set(before.values())
    # One experiment, one lock, one history: the lock is free, the count and the record agree.
    assert ExperimentLock(experiment).holder() is None
    meta = json.loads((experiment / "tune_pipeline.json").read_text())
    assert meta["trial_count"] == 6 and [a["more"] for a in meta["added"]] == [3]
    status = run_tune("status", experiment)
    assert status.returncode == 0 and status.stdout.startswith("rand: 6 trials; 6 finished")
    export = run_tune("export", experiment, "--format", "csv")
    assert len(export.stdout.strip().splitlines()) == 7

    # Past what the space holds: refused in one line, nothing changed. The first 3 trials were
    # drawn as wandb draws, with replacement, so they may share a configuration: count them.
    tried = set(before.values()) | set(added)
    left = 12 - len(tried)
    too_many = run_tune("resume", experiment, "--more", str(left + 1), cwd=tmp_path, env=env)
    assert too_many.returncode == 2
    assert (f"the space has 12 configurations and {len(tried)} were tried; at most {left} more"
            in too_many.stderr), too_many.stderr
    assert json.loads((experiment / "tune_pipeline.json").read_text()) == meta


def test_bayes_study_holds_every_finished_trial_before_its_first_suggestion(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={1: ("ERROR", 1), 3: ("RUNNING", 2)})
    space = parse_space({"method": "bayes", "metric": {"name": "test_accuracy", "goal": "maximize"},
                         "parameters": {k: {"values": v} for k, v in QUICKSTART_GRID.items()}},
                        tmp_path / "space.yaml")
    experiment = load_experiment(path)
    searcher = _searcher(space, experiment, 1)
    more = MoreTrials(searcher, 2, str(path), _finished_points(space, experiment))
    more.set_search_properties(space.metric, space.mode, to_tune(space)["param_space"])
    study = _base(more.searcher)._ot_study
    told = {(t.state.name, t.value) for t in study.trials}
    finished = [t for t in experiment.trials if t.status == "TERMINATED"]
    assert told == {("COMPLETE", t.last["test_accuracy"]) for t in finished} | {("FAIL", None)}
    assert len(study.trials) == len(finished) + 1  # the running one is taught when it ends
    suggestion = more.searcher.suggest("new")
    assert set(suggestion) == set(QUICKSTART_GRID)
    assert len(study.trials) == len(finished) + 2


def test_more_is_refused_for_population_based_training(tmp_path):
    from tune_pipeline.errors import UserError
    from tune_pipeline.extend import add_trials

    path = make_experiment(tmp_path, QUICKSTART_GRID)
    with pytest.raises(UserError, match="population is fixed"):
        add_trials(path, ExperimentRecord(scheduler={"type": "pbt"}), None, 2)


def test_a_grid_adds_repeats_with_new_seeds(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID)
    raw = {"method": "grid", "metric": {"name": "test_accuracy", "goal": "maximize"},
           "parameters": {k: {"values": v} for k, v in QUICKSTART_GRID.items()}}
    space = parse_space(raw, tmp_path / "space.yaml")
    from tune_pipeline.extend import add_trials

    record = add_trials(path, read_record(path), space, 2)
    assert record.trial_count == 12 and record.repeats == 3 and "seed" in record.swept
    searcher = _searcher(space, load_experiment(path), record.repeats)
    configs = [searcher.suggest(str(i)) for i in range(9)]
    assert configs[8] == "FINISHED"  # eight new: two seeds for each of the four points
    assert sorted({c["seed"] for c in configs[:8]}) == [1, 2]
    assert len({json.dumps(c, sort_keys=True) for c in configs[:8]}) == 8
    # The space rebuilt from the metadata runs the same repeats.
    assert parse_space(record.resolved_space, tmp_path / "space.yaml").repeats == 3


def test_a_grid_that_sweeps_the_seed_runs_its_missing_points_with_their_own_seeds(tmp_path):
    space = parse_space({"method": "grid", "metric": {"name": "test_accuracy", "goal": "maximize"},
                         "parameters": {"learning_rate": {"values": [0.1, 0.2]}, "seed": {"values": [1, 2]}}},
                        tmp_path / "space.yaml")
    ran = SimpleNamespace(trials=[SimpleNamespace(config={"learning_rate": 0.1, "seed": 1})])
    todo = GridRepeats(space, ran, 1).todo
    assert sorted((c["learning_rate"], c["seed"]) for c in todo) == [(0.1, 2), (0.2, 1), (0.2, 2)]


def test_lost_trials_trained_and_left_no_results(tmp_path):
    """A resume reruns a finished trial whose results are missing only if it
    trained (its checkpoints are there): a trial Ray ended unstarted (a
    target reached) has neither, and a PBT trial is never rerun."""
    path = make_experiment(tmp_path, {"learning_rate": [0.01, 0.02, 0.05]}, statuses={2: ("TERMINATED", 0)})
    record = read_record(path)
    assert find_lost_trials(load_experiment(path), record) == []
    trained = load_experiment(path).trials[0]
    (trained.path / "result.json").unlink()
    assert find_lost_trials(load_experiment(path), record) == [trained.trial_id]
    pbt = ExperimentRecord.from_json({**record.to_json(), "scheduler": {"type": "pbt"}}, path)
    assert find_lost_trials(load_experiment(path), pbt) == []
