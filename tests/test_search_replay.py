"""The search benchmark's replay (benchmarks/replay.py): a recorded table of
learning curves replayed through the project's own sweep path (the sweep
file, `to_tune`'s searcher and scheduler, a real Tuner), on a small synthetic
table: no training."""

import csv
import itertools
import sys

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from replay import Table, anytime, repeats, replay  # noqa: E402

AXES = {"learning_rate": [0.01, 0.1], "momentum": [0.8, 0.9], "weight_decay": [0.0001, 0.001]}
EPOCHS = 9


def write_table(path):
    """Eight configurations x two training seeds, nine epochs each; every
    configuration's curve a different height, the seeds a little apart."""
    columns = ["config_index", "seed", *AXES, "epoch", "val_accuracy", "test_accuracy", "epoch_seconds"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for index, values in enumerate(itertools.product(*AXES.values())):
            height = 0.3 + 0.6 * ((index * 5) % 8) / 8
            for seed in (0, 1):
                for epoch in range(1, EPOCHS + 1):
                    val = height * epoch / EPOCHS + 0.01 * seed
                    writer.writerow({"config_index": index, "seed": seed, **dict(zip(AXES, values)),
                                     "epoch": epoch, "val_accuracy": val, "test_accuracy": val - 0.02,
                                     "epoch_seconds": 1.0})
    return Table.read(path)


def write_space(path, method, **top):
    path.write_text(yaml.safe_dump({
        "method": method, "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {**{k: {"values": v} for k, v in AXES.items()}, "dataset": {"value": "digits"},
                       "epochs": {"value": EPOCHS}}, **top}))
    return path


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_the_replayed_grid_finds_the_tables_best_and_hyperband_spends_less(tmp_path, ray_session):
    table = write_table(tmp_path / "table.csv")
    grid = replay(write_space(tmp_path / "grid.yaml", "grid"), table, 0, tmp_path, "grid")
    configs = list(itertools.product(*AXES.values()))
    assert len(grid) == len(configs) * EPOCHS  # every configuration, every epoch: 72 trial-epochs
    assert {tuple(r[a] for a in AXES) for r in grid} == set(configs)
    chosen = [table.curve(dict(zip(AXES, c)), 0) for c in configs]  # the curves replay 0 gives them
    best = max(epoch["val_accuracy"] for curve in chosen for epoch in curve)
    spent, found, quoted = anytime(grid)[-1]
    assert (spent, found) == (72, pytest.approx(best))
    assert quoted == pytest.approx(best - 0.02)  # the test accuracy of the selected epoch

    hyperband = replay(write_space(tmp_path / "hb.yaml", "random", run_cap=len(configs),
                                   early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3}),
                       table, 0, tmp_path, "hb")
    trials = {r["trial_id"] for r in hyperband}
    assert len(trials) == len(configs)
    assert len(hyperband) < len(grid)  # some trials were stopped at epoch 1 or 3
    stopped = [t for t in trials if max(r["epoch"] for r in hyperband if r["trial_id"] == t) < EPOCHS]
    # wandb's rule judges a running trial at the last band it reached, at each result:
    # stopped at a band (epoch 1 or 3) or later, before its last epoch.
    assert stopped and all(1 <= max(r["epoch"] for r in hyperband if r["trial_id"] == t) < EPOCHS for t in stopped)


@pytest.mark.slow
def test_each_replay_seed_is_another_random_order_without_repeats(tmp_path, ray_session):
    """A finite random search's order is tune.sample_seed's: the replay seed
    must set it, or every replay of `random` runs the same trials."""
    table = write_table(tmp_path / "table.csv")
    space = write_space(tmp_path / "random.yaml", "random", run_cap=8)
    orders = []
    for seed in (0, 1):
        results = replay(space, table, seed, tmp_path, f"random-{seed}")
        created = sorted({r["trial_id"]: tuple(r[a] for a in AXES) for r in results}.items(),
                         key=lambda item: int(item[0].rsplit("_", 1)[1]))  # Ray numbers trials as made
        orders.append([config for _, config in created])
    assert all(sorted(order) == sorted(itertools.product(*AXES.values())) for order in orders)
    assert orders[0] != orders[1]


def test_a_replay_seed_picks_one_recorded_training_seed_per_configuration(tmp_path):
    table = write_table(tmp_path / "table.csv")
    config = {"learning_rate": 0.1, "momentum": 0.8, "weight_decay": 0.001}
    picks = {table.curve(config, s)[0]["val_accuracy"] for s in range(20)}
    assert len(picks) == 2  # both training seeds are used across replays
    assert table.curve(config, 3) == table.curve(config, 3)
    script = {**config, "runtime_transform_script": "/x/transforms/runtime_transform_basic.py"}
    assert Table([{"runtime_transform_script": "basic", **{k: str(v) for k, v in config.items()},
                   "seed": "0", "epoch": "1", "val_accuracy": "0.5", "test_accuracy": "0.4"}]).key(script) \
        == ("basic", 0.1, 0.8, 0.001)


def test_repeats_count_the_epochs_of_trials_whose_configuration_ran_before():
    results = [{"trial_id": t, "learning_rate": lr, "epoch": e}
               for t, lr, epochs in (("a", 0.1, 3), ("b", 0.01, 1), ("c", 0.1, 2), ("d", 0.1, 1))
               for e in range(1, epochs + 1)]
    assert repeats(results, ["learning_rate"]) == {"trials": 4, "configurations": 2, "repeat_trial_epochs": 3}
