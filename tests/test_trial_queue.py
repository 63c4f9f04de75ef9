"""The next trial a FIFO-order sweep starts: Ray's choice, at a cost that
does not grow with the trials already ended (trial_queue.py)."""

import random

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from tune_pipeline.space import parse_space
from tune_pipeline.trial_queue import FirstOpenTrial
from tune_pipeline.tune_adapter import to_tune

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
# (RUNNING -> PENDING), paused and continued.  None goes from ended back.
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
            trial.status = rng.choice(MOVES[trial.status])


def test_a_new_trial_list_is_scanned_from_its_start():
    """A resumed sweep's trials are a new list, its errored trials reset to
    PENDING: a scheduler restored from the pickle must see them."""
    ours = FirstOpenTrial()
    first = [CountedTrial("a", Trial.ERROR), CountedTrial("b", Trial.TERMINATED), CountedTrial("c", Trial.RUNNING)]
    assert ours.choose_trial_to_run(Controller(first)) is None
    restored = [CountedTrial("a", Trial.PENDING), CountedTrial("b", Trial.TERMINATED), CountedTrial("c")]
    assert ours.choose_trial_to_run(Controller(restored)) is restored[0]


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
