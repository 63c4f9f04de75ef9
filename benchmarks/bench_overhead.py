"""Where a sweep's time goes beyond the training loop.

N trivial trials (digits, 64 images, 1 epoch) run twice in this one script:
first one after another in this process with `tune train`'s loop (the
baseline: what the loop itself costs), then through `run_sweep` exactly as
`tune search` runs them, timed at each step by wrapping the sweep's own
functions and a Tune callback that sees every trial start, result and end.

    python benchmarks/bench_overhead.py [--trials 20]

Per-trial terms are sums over trials of what the trial spent outside its
loop: "start" is from Ray starting the trial to its first result, less the
loop's own seconds for that epoch (actor reuse, config validation, dataset
attach, model build, checkpoint write and report); "teardown" from a trial's
last result to Ray marking it done.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import Timer
from tune_pipeline import sweep as sweep_module
from tune_pipeline.config import validate_config
from tune_pipeline.data import load_for_config
from tune_pipeline.space import load_space
from tune_pipeline.train import fit

TRIVIAL = {"dataset": "digits", "model": "small_cnn", "epochs": 1, "batch_size": 64,
           "max_train_images": 64, "max_test_images": 64}


def in_process(trials: int) -> float:
    data = load_for_config(validate_config(TRIVIAL))
    with Timer() as t:
        for seed in range(trials):
            fit(validate_config({**TRIVIAL, "seed": seed}), dataset=data)
    return t.seconds


def timed(name: str, fn, marks: dict):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            marks[name + " end"] = time.perf_counter()
            marks[name] = marks.get(name, 0.0) + marks[name + " end"] - start
    return wrapper


def through_tune(trials: int, folder: Path) -> dict:
    from ray import tune

    marks: dict = {}
    events: list[tuple[float, str, str, dict]] = []

    class Clock(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            events.append((time.perf_counter(), "start", trial.trial_id, {}))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            events.append((time.perf_counter(), "result", trial.trial_id, dict(result)))

        def on_trial_complete(self, iteration, trials, trial, **info):
            events.append((time.perf_counter(), "complete", trial.trial_id, {}))

    def timed_callbacks(*args, **kwargs):
        # The driver's own work per result (live table, stoppers): summed over results.
        callbacks = build(*args, **kwargs)
        for callback in callbacks:
            for hook in ("on_trial_result", "on_trial_complete", "on_trial_start"):
                if hook in type(callback).__dict__:
                    setattr(callback, hook, timed("driver callbacks", getattr(callback, hook), marks))
        return [*callbacks, Clock()]

    build = sweep_module.build_callbacks
    sweep_module.build_callbacks = timed_callbacks
    # Tune's experiment-state snapshot: when its period (>= 10 s) has passed,
    # and, where CheckpointConfig.num_to_keep is set (no longer: retention.py),
    # forced every num_to_keep trial checkpoints.
    from ray.tune.execution.tune_controller import TuneController
    save_to_dir = TuneController.save_to_dir

    def counted_save(controller):
        marks["state saves"] = marks.get("state saves", 0) + 1
        return timed("state save", save_to_dir, marks)(controller)

    TuneController.save_to_dir = counted_save
    sweep_module.init_ray = timed("ray start", sweep_module.init_ray, marks)
    sweep_module.shared_dataset = timed("dataset decode + object store", sweep_module.shared_dataset, marks)
    sweep_module.load_experiment = timed("driver summary (read experiment)", sweep_module.load_experiment, marks)

    space_file = folder / "trivial.yaml"
    space_file.write_text(yaml.safe_dump({
        "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {**{k: {"value": v} for k, v in TRIVIAL.items()}, "seed": {"values": list(range(trials))}}}))
    from tune_pipeline.sweep_console import SweepConsole

    with Timer() as whole:
        space = load_space(space_file)
        with open(os.devnull, "w") as quiet:
            outcome = sweep_module.run_sweep(space, sweep_module.SweepOptions(name="trivial", storage_path=folder),
                                             SweepConsole(stream=quiet))
    with Timer() as shutdown:
        import ray
        ray.shutdown()
    assert outcome.exit_code == 0, outcome

    first_result, last_result, loop = {}, {}, 0.0
    starts, completes = {}, {}
    for t, kind, trial_id, result in events:
        if kind == "start":
            starts.setdefault(trial_id, t)
        elif kind == "result":
            first_result.setdefault(trial_id, (t, result))
            last_result[trial_id] = t
            loop += result.get("epoch_seconds", 0.0) + result.get("val_seconds", 0.0)
        else:
            completes[trial_id] = t
    def outside_loop(i):
        t, result = first_result[i]
        return t - starts[i] - result.get("epoch_seconds", 0.0) - result.get("val_seconds", 0.0)

    start_overhead = sum(outside_loop(i) for i in first_result)
    # A reused actor pays its process's one-time costs (torch._dynamo, which the
    # optimizer imports on first use; oneDNN's first kernels) in its first trial.
    first_on_actor = {}
    for i in sorted(first_result, key=lambda i: first_result[i][0]):
        first_on_actor.setdefault(first_result[i][1].get("pid"), i)
    first_trials = set(first_on_actor.values())
    teardown = sum(completes[i] - last_result[i] for i in completes)
    return {
        "whole": whole.seconds + shutdown.seconds,
        "dataset decode + object store": marks.get("dataset decode + object store", 0.0),
        "ray start": marks["ray start"],
        "ray up -> first trial start": min(t for t, kind, *_ in events if kind == "start") - marks["ray start end"],
        "loop (epoch + validation, summed)": loop,
        "per-trial start, outside the loop (summed)": start_overhead,
        "first trial on each actor": (len(first_trials), sum(outside_loop(i) for i in first_trials)),
        "later trials": (len(first_result) - len(first_trials),
                         sum(outside_loop(i) for i in first_result if i not in first_trials)),
        "per-trial teardown (summed)": teardown,
        "driver summary (read experiment)": marks.get("driver summary (read experiment)", 0.0),
        "ray shutdown": shutdown.seconds,
        "driver callbacks": marks.get("driver callbacks", 0.0),
        "state saves": marks.get("state saves", 0),
        "state save": marks.get("state save", 0.0),
        "checkpoints": sum(1 for _, kind, _, result in events if kind == "result" and result.get("epoch")),
        "_events": events,
    }


def _noop_trial(config):
    from ray import tune
    tune.report({"epoch": 1})


def tune_floor(trials: int, folder: Path) -> float:
    """Ray Tune's own cost per trial, outside any loop: the same number of
    trials of a trainable that only reports once, with actors reused and the
    same resources, on a Ray started for it.  Summed like the
    sweep's "trial start outside the loop" term: start to first result."""
    from ray import tune

    starts, results = {}, {}

    class Clock(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            starts.setdefault(trial.trial_id, time.perf_counter())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            results.setdefault(trial.trial_id, time.perf_counter())

    tune.Tuner(tune.with_resources(_noop_trial, {"cpu": 1}),
               param_space={"seed": tune.grid_search(list(range(trials)))},
               tune_config=tune.TuneConfig(reuse_actors=True),
               run_config=tune.RunConfig(storage_path=str(folder), name="noop", verbose=0,
                                         callbacks=[Clock()])).fit()
    return sum(results[i] - starts[i] for i in results)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    baseline = in_process(args.trials)
    with tempfile.TemporaryDirectory() as folder:
        terms = through_tune(args.trials, Path(folder))
        import ray
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        floor = tune_floor(args.trials, Path(folder))
        ray.shutdown()
    events = terms.pop("_events")
    first_start = min(t for t, kind, *_ in events if kind == "start")
    last_complete = max(t for t, kind, *_ in events if kind == "complete")
    print(f"{args.trials} trivial trials, Ray {__import__('ray').__version__}, {os.cpu_count()} cores")
    print(f"baseline, one process, tune train's loop       : {baseline:7.2f} s ({baseline / args.trials:.2f} s/trial)")
    print(f"through run_sweep (as tune search), whole      : {terms['whole']:7.2f} s "
          f"({(terms['whole'] - baseline) / args.trials:+.2f} s/trial over the baseline)")
    print(f"  dataset decode + object store                : {terms['dataset decode + object store']:7.2f} s")
    print(f"  ray start                                    : {terms['ray start']:7.2f} s")
    print(f"  ray up -> first trial start (Tuner setup)    : {terms['ray up -> first trial start']:7.2f} s")
    print(f"  first trial start -> last trial done         : {last_complete - first_start:7.2f} s "
          f"(2 trials at a time)")
    print(f"    loop: epoch + validation, summed           : {terms['loop (epoch + validation, summed)']:7.2f} s")
    print(f"    trial start outside the loop, summed       : {terms['per-trial start, outside the loop (summed)']:7.2f} s "
          f"({terms['per-trial start, outside the loop (summed)'] / args.trials:.2f} s/trial)")
    for term in ("first trial on each actor", "later trials"):
        n, seconds = terms[term]
        print(f"      {term + ' (' + str(n) + ')':<41}: {seconds:7.2f} s ({seconds / max(n, 1):.2f} s/trial)")
    print(f"      Ray Tune's own, no-op trials, summed     : {floor:7.2f} s ({floor / args.trials:.2f} s/trial)")
    print(f"    last result -> trial done, summed          : {terms['per-trial teardown (summed)']:7.2f} s "
          f"({terms['per-trial teardown (summed)'] / args.trials:.2f} s/trial)")
    print(f"    driver callbacks (live table), summed      : {terms['driver callbacks']:7.2f} s")
    print(f"    experiment-state saves                     : {terms['state save']:7.2f} s "
          f"({terms['state saves']} saves for {terms['checkpoints']} trial checkpoints)")
    print(f"  driver summary (read experiment from disk)   : {terms['driver summary (read experiment)']:7.2f} s")
    print(f"  ray shutdown                                 : {terms['ray shutdown']:7.2f} s")
    accounted = (terms["dataset decode + object store"] + terms["ray start"] + terms["ray up -> first trial start"]
                 + (last_complete - first_start)
                 + terms["driver summary (read experiment)"] + terms["ray shutdown"])
    print(f"  the rest (validation, folder, lock, experiment end)          : "
          f"{terms['whole'] - accounted:7.2f} s")


if __name__ == "__main__":
    sys.exit(main())
