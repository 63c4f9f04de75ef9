"""A sweep file means what it means to wandb, and the dry run refuses what the
run would: one fast test per defect of issue 8 (no Ray started)."""

import collections
import json
import math
import random

import pytest
import yaml
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.experiment import Experiment, Trial
from tune_pipeline.export import export, grouped_rows
from tune_pipeline.space import (REPEAT_KEY, hyperband_cut_points, load_space, parse_space,
                                 preview_configs, sample, to_tune)
from tune_pipeline.sweep import load_space_from_meta, target_stopper

from conftest import ROOT


def space_file(tmp_path, parameters=None, name="space.yaml", **top):
    data = {"method": "random", "metric": {"name": "test_accuracy", "goal": "maximize"},
            "parameters": parameters or {"learning_rate": {"values": [0.1, 0.01]}}, **top}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def refused(path, *fragments, args=()):
    """The CLI's dry run: exit 2, one line, naming the file, no traceback."""
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run", *args])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    return result.output


# 1. --scheduler asha computes max_t as the file route does: the largest epochs.

def test_scheduler_flag_and_file_share_max_t(tmp_path):
    fast = ROOT / "search_spaces" / "fast_cifar10.yaml"  # sweeps epochs over 10, 16, 24
    by_flag = load_space(fast, scheduler="asha").scheduler
    assert by_flag["max_t"] == 24 and by_flag["cut_points"] == [1, 3, 9]
    raw = yaml.safe_load(fast.read_text())
    raw["tune"]["scheduler"] = {"type": "asha"}
    assert parse_space(raw, fast).scheduler["max_t"] == 24
    result = CliRunner().invoke(app, ["search", str(fast), "--scheduler", "asha", "--dry-run"])
    assert "max_t 24" in result.output


def test_scheduler_grace_period_beyond_max_t_is_refused(tmp_path):
    path = space_file(tmp_path, {"epochs": {"value": 3}}, tune={"scheduler": {"grace_period": 5}})
    refused(path, "tune.scheduler.grace_period: 5 is beyond max_t 3")


# 2. hyperband beyond the last epoch: refused at --dry-run, and the real run leaves nothing behind.

def test_hyperband_beyond_epochs_is_refused_before_any_folder(tmp_path):
    path = space_file(tmp_path, {"epochs": {"value": 3}}, early_terminate={"type": "hyperband", "min_iter": 300})
    refused(path, "early_terminate: the first cut point is epoch 300", str(path))
    storage = tmp_path / "results"
    for _ in range(2):  # the same --name twice: nothing was left to refuse it
        result = CliRunner().invoke(app, ["search", str(path), "--name", "x", "--storage-path", str(storage)])
        assert result.exit_code == 2 and "tune resume" not in result.output
    assert not storage.exists()


# 3. bayes: what Optuna cannot take is refused at validation; what it can is built.

@pytest.mark.parametrize("key,spec", [
    ("learning_rate", {"distribution": "log_normal", "mu": -3, "sigma": 1}),
    ("grad_clip", {"distribution": "q_log_normal", "mu": -3, "sigma": 1, "q": 0.001}),
    ("learning_rate", {"distribution": "q_log_uniform", "min": -5, "max": -1, "q": 0.001}),
    ("batch_size", {"distribution": "q_log_uniform_values", "min": 32, "max": 256, "q": 8}),  # wandb's docs
    ("batch_size", {"distribution": "q_uniform", "min": 30, "max": 250, "q": 8}),
    ("lr_patience", {"distribution": "q_beta", "a": 2, "b": 2, "q": 1}),
], ids=lambda v: v.get("distribution") if isinstance(v, dict) else v)
def test_bayes_refuses_what_optuna_cannot_search(tmp_path, key, spec):
    path = space_file(tmp_path, {key: spec}, method="bayes")
    refused(path, f"parameters.{key}: method bayes (Optuna) cannot search {spec['distribution']}")


@pytest.mark.parametrize("key,spec", [
    ("learning_rate", {"distribution": "inv_log_uniform", "min": 2.3, "max": 9.2}),
    ("learning_rate", {"distribution": "inv_log_uniform_values", "min": 1.0e-4, "max": 0.1}),
    ("learning_rate", {"distribution": "log_uniform", "min": -9.2, "max": -2.3}),
    ("batch_size", {"distribution": "q_uniform", "min": 32, "max": 256, "q": 8}),
    ("batch_size", {"distribution": "int_uniform", "min": 32, "max": 256}),
    ("optimizer", {"values": ["sgd", "adam"]}),
], ids=lambda v: v.get("distribution", "categorical") if isinstance(v, dict) else v)
def test_bayes_builds_optuna_for_what_it_can_search(tmp_path, key, spec):
    space = load_space(space_file(tmp_path, {key: spec}, method="bayes"))
    parts = to_tune(space)
    parts["search_alg"].set_search_properties("test_accuracy", "max", parts["param_space"])
    suggestion = parts["search_alg"].suggest("t1")
    lo, hi = (0, math.inf) if key != "optimizer" else (None, None)
    if lo is not None:
        assert lo < suggestion[key] < hi


# 4. probabilities are honoured (random), refused for grid.

def test_probabilities_are_honoured_within_tolerance(tmp_path):
    path = space_file(tmp_path, {"optimizer": {"values": ["sgd", "adam"], "probabilities": [0.9, 0.1]}})
    space = load_space(path, num_samples=4000)
    rng = random.Random(0)
    ours = collections.Counter(sample(space.params["optimizer"], rng) for _ in range(4000))
    assert abs(ours["sgd"] / 4000 - 0.9) < 0.03
    # The run draws this finite space without replacement: every round of two holds
    # both, and the probabilities weigh which comes first (README: finite spaces).
    points = [p["optimizer"] for p in to_tune(space)["search_alg"]._points_to_evaluate]
    rounds = [points[i:i + 2] for i in range(0, 4000, 2)]
    assert all(sorted(r) == ["adam", "sgd"] for r in rounds)
    assert abs(sum(r[0] == "sgd" for r in rounds) / 2000 - 0.9) < 0.03


def test_probabilities_on_a_grid_or_wrongly_summed_are_refused(tmp_path):
    grid = space_file(tmp_path, {"optimizer": {"values": ["sgd", "adam"], "probabilities": [0.5, 0.5]}},
                      method="grid")
    refused(grid, "parameters.optimizer.probabilities: method grid runs every value once")
    bad = space_file(tmp_path, {"optimizer": {"values": ["sgd", "adam"], "probabilities": [0.5, 0.4]}},
                     name="bad.yaml")
    refused(bad, "probabilities: must sum to 1, they sum to 0.9")


# 5. goal defaults to minimize (wandb), target stops the sweep, hyperband's s and strict count.

def test_goal_defaults_to_minimize_with_a_note_for_accuracies(tmp_path):
    space = load_space(space_file(tmp_path, metric={"name": "test_accuracy"}))
    assert space.mode == "min" and "minimizing test_accuracy, as wandb does" in space.notes[0]
    out = CliRunner().invoke(app, ["search", str(space.source), "--dry-run"]).output
    assert "note: metric.goal is not given" in out
    assert not load_space(space_file(tmp_path, metric={"name": "test_loss"}, name="l.yaml")).notes


def test_metric_target_becomes_a_stopper_that_ends_the_sweep(tmp_path):
    space = load_space(space_file(tmp_path, metric={"name": "test_accuracy", "goal": "maximize", "target": 0.9}))
    assert space.target == 0.9
    stopper = target_stopper("test_accuracy", "max", 0.9)
    assert stopper("t1", {"test_accuracy": 0.5}) is False and not stopper.stop_all()
    stopper("t2", {"test_accuracy": 0.91})
    assert stopper.stop_all()
    low = target_stopper("test_loss", "min", 0.2)
    low("t1", {"test_loss": 0.3})
    assert not low.stop_all()


# wandb's documented hyperband examples (docs: define-sweep-configuration) and its
# local controller's example (wandb/sweeps examples/local-controller/sweep-local-hyperband.yaml).
@pytest.mark.parametrize("early,epochs,cuts", [
    ({"type": "hyperband", "min_iter": 3}, 100, [3, 9, 27, 81]),
    ({"type": "hyperband", "max_iter": 27, "s": 2}, 27, [3, 9]),
    ({"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3}, 100, [3, 9]),  # no cut at 27: s limits
    ({"type": "hyperband", "max_iter": 10, "s": 2, "eta": 3}, 20, [1, 3]),   # int(10/3), int(10/9)
    ({"type": "hyperband", "max_iter": 30, "s": 3, "eta": 3}, 40, [1, 3, 10]),  # not geometric
])
def test_hyperband_cut_points_are_wandbs(tmp_path, early, epochs, cuts):
    assert hyperband_cut_points(early, epochs) == cuts
    path = space_file(tmp_path, {"epochs": {"value": epochs}}, early_terminate=early)
    assert to_tune(load_space(path))["scheduler"].bands == cuts
    asha = to_tune(load_space(path, scheduler="asha"))["scheduler"]  # Ray's ASHA at the same epochs
    assert sorted(t for t, _ in asha._brackets[0]._rungs) == cuts
    assert asha._max_t == epochs  # trials are never cut short by max_t


def test_hyperband_strict_counts_and_a_stray_s_is_reported_ignored(tmp_path):
    path = space_file(tmp_path, {"epochs": {"value": 9}},
                      early_terminate={"type": "hyperband", "min_iter": 1, "s": 2, "strict": False})
    space = load_space(path)
    assert space.scheduler["strict"] is False and to_tune(space)["scheduler"]._strict is False
    assert any(i.startswith("early_terminate.s ") for i in space.ignored)
    assert not any(i.startswith("early_terminate.strict") for i in space.ignored)
    asha = load_space(path, scheduler="asha")  # ASHA has no such choice: said so
    assert any(i.startswith("early_terminate.strict: false") for i in asha.ignored)


# 6. Bounds mean what wandb says, and what a distribution can draw meets the key's check.

def test_inv_log_uniform_bounds_are_exponents(tmp_path):
    space = load_space(space_file(tmp_path, {"learning_rate": {"distribution": "inv_log_uniform",
                                                               "min": 2.3, "max": 9.2}}))
    draws = [sample(space.params["learning_rate"], random.Random(i)) for i in range(500)]
    assert math.exp(-9.2) <= min(draws) and max(draws) <= math.exp(-2.3)


@pytest.mark.parametrize("key,spec,fragment", [
    ("momentum", {"distribution": "log_uniform", "min": -1, "max": 1},
     "log_uniform with min -1, max 1 draws values in [0.367879, 2.71828]; momentum must be in [0, 1)"),
    ("learning_rate", {"distribution": "normal", "mu": 0.05, "sigma": 0.01},
     "normal with mu 0.05, sigma 0.01 draws values in [-inf, inf]; learning_rate must be > 0"),
    ("batch_size", {"distribution": "q_log_uniform_values", "min": 1, "max": 256, "q": 8},
     "q_log_uniform_values with min 1, max 256, q 8 draws values in [0, 256]; batch_size must be > 0"),
    ("learning_rate", {"distribution": "int_uniform", "min": 0.5, "max": 2.5},
     "int_uniform needs integer min and max, got 0.5 and 2.5"),
    ("learning_rate", {"distribution": "log_uniform", "min": -5, "max": 1000},
     "log_uniform's bounds are natural-log exponents: exp of min -5 or max 1000 overflows"),
])
def test_a_range_the_key_refuses_is_one_clear_line(tmp_path, key, spec, fragment):
    refused(space_file(tmp_path, {key: spec}), f"parameters.{key}: {fragment}")


def test_q_log_uniform_values_rounds_as_wandb_not_floors(tmp_path):
    space = load_space(space_file(tmp_path, {"batch_size": {"distribution": "q_log_uniform_values",
                                                            "min": 32, "max": 256, "q": 8}}))
    draws = {sample(space.params["batch_size"], random.Random(i)) for i in range(2000)}
    assert min(draws) == 32 and max(draws) == 256 and all(d % 8 == 0 for d in draws)


# 7. wandb's other keys are ignored once, wandb's scheduler block is not ours, method is required,
#    grid enumerates int_uniform and q_uniform, beta and categorical_w_probabilities are known.

def test_wandb_infrastructure_keys_are_listed_once_as_ignored(tmp_path):
    path = space_file(tmp_path, controller={"type": "local"}, job="a:v0", image_uri="img", apiVersion="v1",
                      kind="sweep", program="train.py", command=["${env}"], entity="me", description="d",
                      scheduler={"job": "wandb/sweep-jobs/job-optuna-sweep-scheduler:latest", "num_workers": 2,
                                 "resource": "local-container", "settings": {"method": "grid"}})
    space = load_space(path)
    assert space.scheduler == {"type": "fifo"}  # wandb's launch scheduler is not ASHA
    out = CliRunner().invoke(app, ["search", str(path), "--dry-run"]).output
    ignored = [line for line in out.splitlines() if line.startswith("ignored: ")]
    assert len(ignored) == 1
    for key in ("controller", "job", "image_uri", "apiVersion", "kind", "program", "command", "entity",
                "description", "scheduler"):
        assert ignored[0].count(f"{key} (") == 1, key


def test_method_is_required(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("parameters:\n  learning_rate: {values: [0.1]}\n")
    refused(path, "method: required")


def test_grid_enumerates_int_uniform_and_q_uniform_as_wandb(tmp_path):
    space = load_space(space_file(tmp_path, {
        "epochs": {"distribution": "int_uniform", "min": 1, "max": 3},
        "batch_size": {"distribution": "q_uniform", "min": 32, "max": 128, "q": 32},  # numpy.arange: 128 excluded
    }, method="grid"))
    assert space.params["epochs"].values == [1, 2, 3]
    assert space.params["batch_size"].values == [32, 64, 96]
    assert space.trial_count() == 9
    points = to_tune(space)["search_alg"]._points_to_evaluate
    assert [(p["batch_size"], p["epochs"]) for p in points[:4]] == [(32, 1), (32, 2), (32, 3), (64, 1)]


def test_beta_and_q_beta_sample_in_zero_one(tmp_path):
    space = load_space(space_file(tmp_path, {"grad_clip": {"distribution": "q_beta", "a": 2, "b": 5, "q": 0.1},
                                             "weight_decay": {"distribution": "beta"}}))
    draws = [preview_configs(space, 1, seed=i)[0] for i in range(200)]
    assert all(0 <= d["grad_clip"] <= 1 and 0 <= d["weight_decay"] <= 1 for d in draws)


def test_our_tune_settings_must_live_in_the_tune_block(tmp_path):
    path = space_file(tmp_path, resources={"cpu": 1}, num_samples=2)
    refused(path, "resources: a Tune setting; put it under tune:", "num_samples: a Tune setting")


# 8. Resume from anywhere: the metadata's space has absolute paths.

def test_resume_rebuilds_the_space_from_another_folder(tmp_path, monkeypatch):
    home = tmp_path / "project"
    (home / "mydata").mkdir(parents=True)
    (home / "my_transform.py").write_text((ROOT / "transforms" / "runtime_transform_basic.py").read_text())
    path = space_file(home, {"data_dir": {"value": "mydata"},
                             "runtime_transform_script": {"value": "my_transform.py"},
                             "learning_rate": {"values": [0.1, 0.01]}},
                      early_terminate={"type": "hyperband", "min_iter": 1})
    monkeypatch.chdir(home)
    space = load_space("space.yaml", ["epochs=4"])
    meta = json.loads(json.dumps({"space_file": str(space.source), "space": space.raw,
                                  "resolved_space": space.resolved()}))
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = load_space_from_meta(meta)
    assert again.fixed["data_dir"] == str(home / "mydata")
    assert again.fixed["runtime_transform_script"] == str(home / "my_transform.py")
    assert again.fixed["epochs"] == 4 and again.scheduler == space.scheduler
    assert again.params["learning_rate"].values == [0.1, 0.01]


# 9. Grid repeats differ by seed, and export --group folds them.

def test_grid_repeats_get_their_own_seeds(tmp_path):
    space = load_space(space_file(tmp_path, {"learning_rate": {"values": [0.1, 0.01]}}, method="grid"),
                       num_samples=3)
    assert space.trial_count() == 6 and REPEAT_KEY in space.swept()
    parts = to_tune(space)
    points = parts["search_alg"]._points_to_evaluate
    assert parts["num_samples"] == 6  # the whole grid, then the whole grid again with the next seed
    assert [(p["learning_rate"], p[REPEAT_KEY]) for p in points] == [
        (0.1, 0), (0.01, 0), (0.1, 1), (0.01, 1), (0.1, 2), (0.01, 2)]
    assert [{k: c[k] for k in space.swept()} for c in preview_configs(space, 6)] == points


def test_export_group_folds_repeats_into_mean_and_std(tmp_path):
    trials = []
    for i, (lr, seed, acc) in enumerate([(0.1, 0, 0.80), (0.1, 1, 0.90), (0.01, 0, 0.50), (0.01, 1, 0.50)]):
        history = [{"epoch": 1, "test_accuracy": acc, "best_test_accuracy": acc, "best_train_accuracy": acc,
                    "best_loss": 1.0, "best_test_loss": 1.0}]
        trials.append(Trial(f"t{i}", "TERMINATED", {"learning_rate": lr, "seed": seed}, tmp_path, history))
    exp = Experiment(tmp_path, {"metric": "test_accuracy", "mode": "max", "swept": ["learning_rate", "seed"],
                                "repeat_key": "seed"}, trials)
    rows = grouped_rows(exp)
    assert [r["config"] for r in rows] == ["learning_rate=0.1", "learning_rate=0.01"]
    assert rows[0]["trials"] == 2 and math.isclose(rows[0]["best_test_accuracy_mean"], 0.85)
    assert math.isclose(rows[0]["best_test_accuracy_std"], math.sqrt(0.005))
    md = export(exp, "md", None, group=True)
    assert "85.00% ± 7.07%" in md  # accuracies as percentages, as everywhere
    assert "test_accuracy_at_best" in md.splitlines()[0]  # the number the note says to quote


# 10. Model names as users write them; errors name --set and quote the value.

@pytest.mark.parametrize("written,canonical", [("PreActResNet18", "preact_resnet18"), ("VGG16", "vgg16"),
                                               ("ResNet18", "resnet18"), ("resnet-18", "resnet18")])
def test_model_names_match_any_spelling_and_record_the_canonical_one(tmp_path, written, canonical):
    space = load_space(space_file(tmp_path), [f"model={written}"])
    assert space.fixed["model"] == canonical
    grid = load_space(space_file(tmp_path, {"model": {"values": [written, "small_cnn"]}}, name="g.yaml"))
    assert grid.params["model"].values == [canonical, "small_cnn"]


def test_an_unknown_set_value_names_set_quotes_it_and_suggests(tmp_path):
    out = refused(space_file(tmp_path), "--set model: unknown model 'ResNet50' (did you mean 'resnet18'?)",
                  args=["--set", "model=ResNet50"])
    assert "parameters.model" not in out
    refused(space_file(tmp_path), "--set optimizer: must be one of sgd, adam, adamw, got 'rmsprop'",
            args=["--set", "optimizer=rmsprop"])


def test_readme_lists_every_wandb_key_and_distribution_with_what_it_does():
    from tune_pipeline.distributions import KEY_TYPE_RULE, RECORDS
    from tune_pipeline.space import TOP_LEVEL

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Search-space format"):readme.index("## Training keys")]
    for key in TOP_LEVEL:
        assert f"`{key}`" in section, key
    for record in RECORDS:  # the table row is the record's own line
        assert f"| `{record.name}` |" in section and record.doc in section, record.name
    assert KEY_TYPE_RULE in section


@pytest.mark.parametrize("early", [{"type": "hyperband", "min_iter": 1.0e300, "eta": 1.0e300},
                                   {"type": "hyperband", "min_iter": 1, "eta": float("inf")},
                                   {"type": "hyperband", "max_iter": float("nan"), "s": 2}])
def test_absurd_hyperband_numbers_are_one_line(tmp_path, early):
    refused(space_file(tmp_path, early_terminate=early), "early_terminate")
