"""What the driver does with ended trials (ended_trials.py): the next
trial a FIFO-order sweep starts is Ray's choice, at a cost that does not
grow with the trials already ended; an ended trial keeps of Ray's running
analysis only the sweep's metric."""

import json
import pickle
import random

import pyarrow.fs
import pytest
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from tune_pipeline.ended_trials import Asha, EndedTrialsTrimmed, FirstOpenTrial
from tune_pipeline.experiment import FINISHED_STATE, STOPPED_STATE, load_experiment
from tune_pipeline.space import parse_space
from tune_pipeline.tune_adapter import to_tune

from conftest import TINY, run_tune, write_sweep

ENDED = (Trial.TERMINATED, Trial.ERROR)


class CountedTrial:
    """A trial whose status reads are counted: what a scan costs."""

    reads = 0

    def __init__(self, name: str, status: str = Trial.PENDING):
        self.name, self._status = name, status

    @property
    def status(self) -> str:
        CountedTrial.reads += 1
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value

    def __repr__(self):
        return f"{self.name}:{self._status}"


class Controller:
    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials


# A trial's moves while Ray runs a sweep: started, ended, failed and retried
# (RUNNING -> PENDING, and Ray moves it to the end of its list), paused and
# continued.  None goes from ended back.
MOVES = {Trial.PENDING: [Trial.RUNNING], Trial.RUNNING: [Trial.TERMINATED, Trial.ERROR, Trial.PENDING, Trial.PAUSED],
         Trial.PAUSED: [Trial.PENDING, Trial.RUNNING], Trial.TERMINATED: [], Trial.ERROR: []}


@pytest.mark.parametrize("seed", range(20))
def test_the_trial_chosen_is_the_one_rays_fifo_scan_chooses(seed):
    rng = random.Random(seed)
    trials = [CountedTrial(f"t{i}") for i in range(5)]
    ours, rays, controller = FirstOpenTrial(), FIFOScheduler(), Controller(trials)
    for _ in range(400):
        assert ours.choose_trial_to_run(controller) is rays.choose_trial_to_run(controller)
        if rng.random() < 0.1:
            trials.append(CountedTrial(f"t{len(trials)}"))  # the searcher made one more
        movable = [t for t in trials if MOVES[t.status]]
        if movable:
            trial = rng.choice(movable)
            was, trial.status = trial.status, rng.choice(MOVES[trial.status])
            if (was, trial.status) == (Trial.RUNNING, Trial.PENDING):  # a retry: _try_recover's move
                trials.remove(trial)
                trials.append(trial)


def test_a_new_trial_list_is_scanned_from_its_start():
    """A resumed sweep's trials are a new list, its errored trials reset to
    PENDING (`--restart-errored`): the scheduler, pickled after it chose, must
    see them, and carries no trial."""
    ours = Asha(time_attr="training_iteration", max_t=4, grace_period=1)
    first = [CountedTrial("a", Trial.ERROR), CountedTrial("b", Trial.TERMINATED), CountedTrial("c", Trial.RUNNING)]
    assert ours.choose_trial_to_run(Controller(first)) is None
    pickled = pickle.dumps(ours)
    assert b"CountedTrial" not in pickled
    restored = [CountedTrial("a", Trial.PENDING), CountedTrial("b", Trial.TERMINATED), CountedTrial("c")]
    assert pickle.loads(pickled).choose_trial_to_run(Controller(restored)) is restored[0]


def test_a_choice_reads_the_open_trials_not_the_ended_ones():
    """5,000 ended trials, two running, three waiting: after the first step
    (which walks past the ended ones once), a step reads a handful of
    statuses, where Ray's scan reads every trial's."""
    trials = [CountedTrial(f"t{i}", rng_status) for i, rng_status in
              enumerate([ENDED[i % 2] for i in range(5000)] + [Trial.RUNNING] * 2 + [Trial.PENDING] * 3)]
    controller, ours = Controller(trials), FirstOpenTrial()
    ours.choose_trial_to_run(controller)
    CountedTrial.reads = 0
    for _ in range(100):
        assert ours.choose_trial_to_run(controller) is trials[5002]
    assert CountedTrial.reads <= 100 * 5
    CountedTrial.reads = 0
    FIFOScheduler().choose_trial_to_run(controller)
    assert CountedTrial.reads > 5000


@pytest.mark.parametrize("scheduler, early", [("fifo", None), ("asha", None),
                                              (None, {"type": "hyperband", "min_iter": 1, "eta": 3})])
def test_every_fifo_order_scheduler_a_sweep_runs_chooses_from_the_first_open_trial(tmp_path, scheduler, early):
    raw = {"method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
           "parameters": {"learning_rate": {"values": [0.01, 0.1]}, "epochs": {"value": 9}}}
    if early:
        raw["early_terminate"] = early
    built = to_tune(parse_space(raw, tmp_path / "space.yaml", scheduler=scheduler))["scheduler"]
    assert isinstance(built, FirstOpenTrial) and isinstance(built, FIFOScheduler)


def ray_trial(tmp_path) -> Trial:
    """A Ray trial in the driver that reported three epochs."""
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp",
                             storage_filesystem=pyarrow.fs.LocalFileSystem())
    trial = Trial("train_trial", config={"learning_rate": 0.1}, trial_id="ab12c_00000", storage=storage, stub=True)
    for epoch in (1, 2, 3):
        trial.update_last_result({"epoch": epoch, "val_accuracy": 0.1 * epoch, "train_loss": 1 / epoch,
                                  "training_iteration": epoch})
    return trial


@pytest.mark.parametrize("end", ["on_trial_complete", "on_trial_error"])
def test_an_ended_trial_keeps_of_rays_analysis_only_the_sweeps_metric(tmp_path, end):
    trial = ray_trial(tmp_path)
    saved = json.loads(trial.get_json_state()[1])
    assert {"val_accuracy", "train_loss", "epoch"} <= set(saved["metric_analysis"])
    getattr(EndedTrialsTrimmed("val_accuracy"), end)(0, [trial], trial)
    saved = json.loads(trial.get_json_state()[1])  # what Ray's next save writes
    assert set(saved["metric_analysis"]) == set(saved["metric_n_steps"]) == {"val_accuracy"}
    # What Ray's ExperimentAnalysis ranks trials by is intact: max, last, averages.
    assert trial.metric_analysis["val_accuracy"]["max"] == pytest.approx(0.3)
    assert trial.metric_analysis["val_accuracy"]["last-5-avg"] == pytest.approx(0.2)
    assert trial.last_result["val_accuracy"] == pytest.approx(0.3)
    # Restarted (`tune resume --restart-errored`), it reports again.
    trial.update_last_result({"epoch": 1, "val_accuracy": 0.5, "train_loss": 0.7, "training_iteration": 4})
    assert trial.metric_analysis["val_accuracy"]["max"] == 0.5 and trial.metric_analysis["train_loss"]["last"] == 0.7


@pytest.mark.slow
def test_a_sweep_under_rays_asha_runs_every_trial_to_an_end(tmp_path):
    """`--scheduler asha`: Ray's ASHA with the first-open-trial choice, as a
    user runs it; every trial ends (finished or stopped), none is left waiting."""
    space = write_sweep(tmp_path, {"learning_rate": {"values": [0.002, 0.01, 0.05, 0.2]},
                                   "lr_scheduler": {"value": "none"}, "epochs": {"value": 3}})
    result = run_tune("search", space, "--scheduler", "asha", "--name", "asha", "--storage-path", tmp_path,
                      *TINY, "--max-concurrent", "1", cwd=tmp_path,
                      env={"TUNE_PIPELINE_CACHE": str(tmp_path / "cache"), "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stdout + result.stderr
    experiment = load_experiment(tmp_path / "asha")
    assert len(experiment.trials) == 4
    assert set(experiment.state_counts()) <= {FINISHED_STATE, STOPPED_STATE}, experiment.state_counts()
