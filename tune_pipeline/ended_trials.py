"""What a sweep's driver does with the trials that have ended: it no longer
scans them for the next trial to start, and it drops what Ray keeps of them
that nothing reads.  So a long sweep's driver costs what its open trials
cost, not what every trial it ever ran does (BENCHMARKS.md, "The driver
over a long sweep": 5,000 trivial trials).

The next trial.  Ray's FIFOScheduler.choose_trial_to_run, which ASHA
inherits, reads every trial's status for the first PENDING one (then the
first PAUSED) at every step of the driver's loop: 12% of the driver's CPU
at 2,000 trials, and growing.  `FirstOpenTrial` keeps the index of the first
trial that has not ended and scans from there: the same trial as Ray's
scan, because while Ray runs a sweep no trial goes from an ended state back
to PENDING or PAUSED ahead of that index (a trial that fails and is retried
goes from RUNNING to PENDING, and Ray moves it to the end of the list).

What is kept.  An ended trial's running max, min, average and last-5/10
averages of every numeric result key (`internals.forget_metric_analysis`)
go, but for the sweep's own metric, which Ray's ExperimentAnalysis and
ResultGrid rank trials by: 15 of the 27 KB each trial added to the state
file Ray rewrites whole at every save, and about 50 KB of driver memory per
trial.
"""

from __future__ import annotations

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from tune_pipeline.internals import forget_metric_analysis

ENDED = (Trial.TERMINATED, Trial.ERROR)


class FirstOpenTrial:
    """choose_trial_to_run as Ray's FIFOScheduler's, from the first trial
    that has not ended.  A mixin: put it before a FIFOScheduler subclass."""

    # (id of the trial list it indexes, the index).  An id, not the list: Ray
    # pickles its schedulers (tuner.pkl, before the run; ASHA's `save` pickles
    # its __dict__), and the trials must never travel with one.  A scheduler
    # serves one controller, whose list lives as long as the run; another
    # list (a restored run's) starts the index at 0.
    _first_open = (0, 0)

    def choose_trial_to_run(self, tune_controller):
        trials = tune_controller.get_trials()
        list_id, start = self._first_open
        if list_id != id(trials) or start > len(trials):
            start = 0
        while start < len(trials) and trials[start].status in ENDED:
            start += 1
        self._first_open = (id(trials), start)
        for wanted in (Trial.PENDING, Trial.PAUSED):
            for index in range(start, len(trials)):
                if trials[index].status == wanted:
                    return trials[index]
        return None


class Fifo(FirstOpenTrial, FIFOScheduler):
    """Ray's default scheduler (every trial runs to its end)."""


class Asha(FirstOpenTrial, ASHAScheduler):
    """Ray's ASHA."""


class EndedTrialsTrimmed(tune.Callback):
    """Drops what Ray keeps of a trial that ended and nothing reads.  Put it
    last among the callbacks: every other one sees the trial's end whole.
    Trials Ray ends by other paths (an experiment-wide stop, the run's own
    end) keep theirs: those are few, not one per trial."""

    def __init__(self, metric: str):
        self.metric = metric

    def on_trial_complete(self, iteration, trials, trial, **info):
        forget_metric_analysis(trial, keep=self.metric)

    def on_trial_error(self, iteration, trials, trial, **info):
        forget_metric_analysis(trial, keep=self.metric)
