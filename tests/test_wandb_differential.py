"""This project against wandb's own engine, on generated cases: the `sweeps`
package (0.3.0, MIT licence) installed into a throwaway folder for this module.

- verdicts: a generated sweep config is refused here exactly when wandb's
  engine refuses it (its validation lists a violation, other than its warning
  for exponent bounds, or it cannot produce a run or its hyperband bands);
- grid order: the trials of a generated grid come in wandb's order;
- hyperband: on generated histories our rule stops what wandb's stops, and
  the Ray Tune scheduler, fed the results one at a time, stops at each result
  what wandb's engine stops looking at the sweep as it stands then.

Documented differences (docs/search-spaces.md, "What differs from wandb") are not generated:
values no training key takes, string bounds, `max_iter` without `s`.
Skipped, with the reason, where the package cannot be installed (no network).
"""

import importlib
import math
import random
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from tune_pipeline.errors import UserError
from tune_pipeline.hyperband import runs_to_stop
from tune_pipeline.early_stopping import hyperband_cut_points
from tune_pipeline.sampling import trial_points
from tune_pipeline.space import parse_space
from tune_pipeline.tune_adapter import to_tune

SWEEPS = "sweeps==0.3.0"


@pytest.fixture(scope="module")
def wandb_engine(tmp_path_factory):
    target = tmp_path_factory.mktemp("sweeps030")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                              str(target), "--timeout", "20", "--retries", "0", SWEEPS, "jsonref"],
                             capture_output=True, text=True, timeout=300)
    if install.returncode != 0:
        pytest.skip(f"cannot install {SWEEPS} here (no package index?): "
                    f"{(install.stderr.strip().splitlines() or ['?'])[-1]}")
    sys.path.insert(0, str(target))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic's notes on wandb's model config
            modules = SimpleNamespace(
                sweeps=importlib.import_module("sweeps"),
                config=importlib.import_module("sweeps.config"),
                grid=importlib.import_module("sweeps.grid_search"),
                random=importlib.import_module("sweeps.random_search"),
                hyperband=importlib.import_module("sweeps.hyperband_stopping"))
        assert modules.sweeps.__version__ == "0.3.0"
        yield modules
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m == "sweeps" or m.startswith("sweeps.")]:
            del sys.modules[name]


# ---------------------------------------------------------------- verdicts

def wandb_runs_it(engine, config) -> bool:
    try:
        violations = engine.config.schema_violations_from_proposed_config(config)
    except Exception:  # noqa: BLE001 - wandb's validator itself fails on it
        return False
    if [v for v in violations if "base-e exponents" not in v]:  # that one is a warning in wandb's CLI
        return False
    try:
        if config["method"] == "grid":
            engine.grid.grid_search_next_runs([], config)
        else:
            engine.random.random_search_next_runs(config)
        if "early_terminate" in config:
            engine.hyperband.hyperband_stop_runs([], config)
    except Exception:  # noqa: BLE001 - the engine cannot produce a run
        return False
    return True


def bound(rng, integer):
    value = rng.choice([0, 1, 2, 5, 16, 32, 100])
    return value if integer else rng.choice([float(value), value + 0.5])


def generated_parameter(rng):
    """(spec, the training key it maps to): keys that take every value the spec can give."""
    kind = rng.choice(["int_uniform", "uniform", "inferred", "log_values", "values", "probabilities", "constant"])
    if kind in ("int_uniform", "uniform", "inferred"):
        lo, hi = bound(rng, rng.random() < 0.6), bound(rng, rng.random() < 0.6)
        spec = {"min": lo, "max": hi} if kind == "inferred" else {"distribution": kind, "min": lo, "max": hi}
        return spec, "weight_decay" if kind == "uniform" or isinstance(lo, float) or isinstance(hi, float) \
            else "max_train_images"
    if kind == "log_values":
        distribution = rng.choice(["log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values"])
        lo, hi = rng.choice([0.001, 0.1, 1.0, 8]), rng.choice([0.001, 0.1, 1.0, 64])
        return {"distribution": distribution, "min": lo, "max": hi}, "weight_decay"
    if kind == "values":
        return {"values": [rng.choice([1, 2, 3, 3.0, 3000000, 3000000.0]) for _ in range(rng.randint(1, 4))]}, "seed"
    if kind == "probabilities":
        n = rng.randint(1, 3)
        probs = rng.choice([[1 / n] * n, [0.99999 / n] * n, [0.9 / n] * n, [str(1 / n)] * n, [1 / n] * (n + 1),
                            [-0.5] + [1.5 / max(1, n - 1)] * (n - 1)])
        return {"values": list(range(1, n + 1)), "probabilities": probs}, "seed"
    return {"value": rng.choice([1, 2])}, "seed"


def generated_config(rng):
    config = {"method": rng.choice(["grid", "random"]), "metric": {"name": "loss", "goal": "minimize"}}
    rename = {"loss": "val_loss"}
    count = rng.choice([0, 1, 1, 2])
    if count or rng.random() < 0.5:
        config["parameters"] = {}
    used = set()
    for i in range(count):
        spec, key = generated_parameter(rng)
        if key in used:
            continue
        used.add(key)
        config["parameters"][f"p{i}"] = spec
        rename[f"p{i}"] = key
    if rng.random() < 0.4:
        et = {"type": "hyperband", "eta": rng.choice([2, 3, 1.5])}
        if rng.random() < 0.5:
            et["min_iter"] = rng.choice([1, 3, 3.0])
        else:
            et.update(max_iter=rng.choice([9, 27, 27.0]), s=rng.choice([1, 2, 2.0, 3]))
        config["early_terminate"] = et
    return config, rename


def test_verdicts_agree_with_wandbs_engine(wandb_engine):
    rng, compared, refused = random.Random(21), 0, 0
    for _ in range(600):
        config, rename = generated_config(rng)
        wandb_verdict = wandb_runs_it(wandb_engine, config)
        try:
            parse_space({**config, "tune": {"rename": rename}}, Path("generated.yaml"), ["epochs=1000"])
            ours = True
        except UserError as exc:
            ours, reason = False, exc.one_line()
        assert ours == wandb_verdict, (config, "wandb runs it" if wandb_verdict else "wandb refuses it",
                                       None if ours else reason)
        compared += 1
        refused += not ours
    assert compared == 600 and 100 < refused < 500  # both verdicts well represented


# ---------------------------------------------------------------- grid order

def test_grid_order_is_wandbs(wandb_engine):
    rng = random.Random(7)
    axes = {"lr_step_size": lambda: {"values": rng.sample([1, 2, 3, 5, 8], rng.randint(1, 4)) + [1]},
            "epochs": lambda: {"distribution": "int_uniform", "min": 1, "max": rng.randint(2, 5)},
            "weight_decay": lambda: {"distribution": "q_uniform", "min": 0.5, "max": rng.choice([2.0, 3.3]),
                                     "q": 0.5},
            "max_train_images": lambda: {"values": [3000000, 7, 3000000.0]},
            "seed": lambda: {"value": 4}}
    for case in range(40):
        keys = rng.sample(sorted(axes), rng.randint(2, 4))
        names = rng.sample(["a", "b", "z", "m", "nested_x"], len(keys))  # sorted differently from the keys
        config = {"method": "grid", "parameters": {n: axes[k]() for n, k in zip(names, keys)}}
        runs = wandb_engine.grid.grid_search_next_runs([], config, n=10_000)
        theirs = [{k: r.config[n]["value"] for n, k in zip(names, keys)} for r in runs if r is not None]
        space = parse_space({**config, "tune": {"rename": dict(zip(names, keys))}}, Path("g.yaml"))
        ours = [{**space.fixed, **point} for point in trial_points(space)]
        assert [{k: p[k] for k in keys} for p in ours] == [
            {k: (float(v) if k == "weight_decay" else v) for k, v in t.items()} for t in theirs], config


# ---------------------------------------------------------------- hyperband

def generated_runs(rng, n):
    return [(f"r{i}", rng.choice(["running", "running", "finished"]),
             [round(rng.gauss(1.0, 0.3), 2) for _ in range(rng.randint(0, 30))]) for i in range(n)]


def generated_et(rng):
    et = {"type": "hyperband", "eta": rng.choice([2, 3, 1.5]), "strict": rng.choice([True, False])}
    if rng.random() < 0.5:
        et["min_iter"] = rng.choice([1, 2, 3])
    else:
        et.update(max_iter=rng.choice([9, 20, 27]), s=rng.choice([1, 2, 3]))
    return et


def wandb_stops(engine, et, goal, runs):
    state = engine.sweeps.RunState
    sweep_runs = [engine.sweeps.SweepRun(name=name, state=state(s), history=[{"loss": v} for v in values])
                  for name, s, values in runs]
    config = {"method": "random", "metric": {"name": "loss", "goal": goal}, "early_terminate": et,
              "parameters": {"a": {"values": [1]}}}
    return [r.name for r in engine.hyperband.hyperband_stop_runs(sweep_runs, config)]


def test_the_rule_stops_what_wandb_stops(wandb_engine):
    rng = random.Random(3)
    for _ in range(300):
        et, goal, runs = generated_et(rng), rng.choice(["minimize", "maximize"]), generated_runs(rng, rng.randint(1, 12))
        bands = hyperband_cut_points(et, math.inf)
        ours = runs_to_stop({n: v for n, _, v in runs}, {n for n, s, _ in runs if s == "running"}, bands,
                            et["eta"], "max" if goal == "maximize" else "min", et["strict"])
        assert ours == wandb_stops(wandb_engine, et, goal, runs), (et, goal, runs)


class Controller:
    def __init__(self):
        self.stopped = []

    def stop_trial(self, trial):
        trial.status = "TERMINATED"
        self.stopped.append(trial.trial_id)


def test_the_scheduler_at_each_result_stops_what_wandb_stops_then(wandb_engine):
    """Results arrive one at a time (the trials in turn, an epoch each); after
    each, wandb's engine looks at the sweep as it stands: the runs it stops are
    those the scheduler stopped at that result."""
    rng = random.Random(5)
    for case in range(40):
        et, goal = generated_et(rng), rng.choice(["minimize", "maximize"])
        planned = {f"t{i}": [round(rng.gauss(1.0, 0.3), 2) for _ in range(rng.randint(1, 20))]
                   for i in range(rng.randint(2, 8))}
        raw = {"method": "random", "metric": {"name": "loss", "goal": goal}, "early_terminate": et,
               "parameters": {"a": {"values": [1, 2]}}, "tune": {"rename": {"loss": "val_loss", "a": "seed"}}}
        space = parse_space(raw, Path("h.yaml"), ["epochs=1000"])
        scheduler = to_tune(space)["scheduler"]
        scheduler.set_search_properties(space.metric, space.mode)
        trials = {n: SimpleNamespace(trial_id=n, status="RUNNING", last_result={}) for n in planned}
        seen = {n: [] for n in planned}
        for trial in trials.values():
            scheduler.on_trial_add(None, trial)
        for epoch in range(max(map(len, planned.values()))):
            for name, values in planned.items():
                trial = trials[name]
                if trial.status != "RUNNING" or epoch >= len(values):
                    continue
                seen[name].append(values[epoch])
                controller = Controller()
                decision = scheduler.on_trial_result(controller, trial, {"training_iteration": epoch + 1,
                                                                         "val_loss": values[epoch]})
                stopped = controller.stopped + ([name] if decision == "STOP" else [])
                snapshot = [(n, "running" if trials[n].status == "RUNNING" or n in stopped else "killed"
                             if len(seen[n]) < len(planned[n]) else "finished", seen[n]) for n in planned]
                assert sorted(stopped) == sorted(wandb_stops(wandb_engine, et, goal, snapshot)), (case, et)
                for n in stopped:
                    trials[n].status = "TERMINATED"
                if decision != "STOP" and epoch == len(values) - 1:
                    trial.status = "TERMINATED"  # finished its epochs
