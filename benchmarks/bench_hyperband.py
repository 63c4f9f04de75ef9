"""The driver's cost per result of wandb's hyperband rule (tune_pipeline.hyperband)
against Ray's ASHA on the same results, without Ray running: TRIALS trials of
EPOCHS epochs, CONCURRENT at a time, each reporting its epochs in turn.

    flock /tmp/cpu.lock python3 benchmarks/bench_hyperband.py [TRIALS] [EPOCHS] [CONCURRENT]
"""

from __future__ import annotations

import random
import sys
import time
from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tune_pipeline.hyperband import WandbHyperband


class Controller:
    def __init__(self, trials):
        self.trials = trials

    def stop_trial(self, trial):
        trial.status = "TERMINATED"

    def get_trials(self):
        return self.trials


def feed(scheduler, trials: int, epochs: int, concurrent: int, seed: int = 0) -> tuple[float, int]:
    """Seconds spent in the scheduler, and results fed."""
    rng = random.Random(seed)
    all_trials = [SimpleNamespace(trial_id=f"t{i}", status="PENDING", last_result={}, config={})
                  for i in range(trials)]
    controller = Controller(all_trials)
    spent, results = 0.0, 0
    for trial in all_trials:
        scheduler.on_trial_add(controller, trial)
    waiting, running = list(all_trials), []
    quality = {t.trial_id: rng.random() for t in all_trials}
    epoch_of = {t.trial_id: 0 for t in all_trials}
    while waiting or running:
        while waiting and len(running) < concurrent:
            trial = waiting.pop(0)
            trial.status = "RUNNING"
            running.append(trial)
        for trial in list(running):
            if trial.status != "RUNNING":
                running.remove(trial)
                continue
            epoch_of[trial.trial_id] += 1
            epoch = epoch_of[trial.trial_id]
            result = {"training_iteration": epoch, "val_loss": quality[trial.trial_id] / epoch + rng.gauss(0, 0.01)}
            start = time.perf_counter()
            decision = scheduler.on_trial_result(controller, trial, result)
            spent += time.perf_counter() - start
            results += 1
            if decision == TrialScheduler.STOP or epoch == epochs:
                trial.status = "TERMINATED"
                start = time.perf_counter()
                scheduler.on_trial_complete(controller, trial, result)
                spent += time.perf_counter() - start
                running.remove(trial)
    return spent, results


def main(trials: int = 1000, epochs: int = 30, concurrent: int = 8) -> None:
    bands = [1, 3, 9, 27]
    schedulers = {
        "ASHA (Ray)": ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=3),
        "wandb hyperband": WandbHyperband(bands, 3),
    }
    print(f"{trials} trials x {epochs} epochs, {concurrent} at a time, bands {bands}")
    for name, scheduler in schedulers.items():
        scheduler.set_search_properties("val_loss", "min")
        spent, results = feed(scheduler, trials, epochs, concurrent)
        print(f"{name:16s} {results:7d} results  {spent:7.3f} s  {spent / results * 1e6:8.1f} us/result")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
