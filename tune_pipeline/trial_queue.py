"""Which trial a sweep starts next, for the schedulers that start trials in
the order they were made (none, ASHA, wandb's hyperband): Ray's rule, at a
cost that does not grow with the trials already ended.

Ray's FIFOScheduler.choose_trial_to_run, which ASHA inherits, scans every
trial of the experiment for the first PENDING one (then the first PAUSED)
at every step of the driver's loop.  Ended trials pile up at the front of
that list, so a long sweep pays for all of them again and again: at 2,000
trivial trials that scan was 12% of the driver's CPU and growing
(BENCHMARKS.md, "The driver over a long sweep").  `FirstOpenTrial` keeps the
index of the first trial that has not ended and scans from there: the same
trial as Ray's scan, because a trial never goes from an ended state back to
PENDING or PAUSED while Ray runs the sweep (a trial that fails and is
retried goes from RUNNING to PENDING; errored trials restarted by `tune
resume` are reset before the first step, in a new trial list, which resets
the index).
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler


class FirstOpenTrial:
    """choose_trial_to_run as Ray's FIFOScheduler's, from the first trial
    that has not ended.  A mixin: put it before a FIFOScheduler subclass."""

    # (id of the trial list it indexes, the index): an int pair, so a pickled
    # scheduler carries no trials; a restored sweep's new list starts it at 0.
    _first_open = (0, 0)

    def choose_trial_to_run(self, tune_controller):
        trials = tune_controller.get_trials()
        list_id, start = self._first_open
        if list_id != id(trials) or start > len(trials):
            start = 0
        while start < len(trials) and trials[start].status in (Trial.TERMINATED, Trial.ERROR):
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
