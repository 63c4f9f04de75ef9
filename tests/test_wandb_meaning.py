"""A sweep file means what it means to wandb, and the dry run refuses what the
run would: one fast test per rule (no Ray started)."""

import collections
import json
import math
import random

import pytest
import yaml
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.experiment import Experiment, Trial
from tune_pipeline.experiment_record import ExperimentRecord, load_space_from_meta
from tune_pipeline.export import export, grouped_rows
from tune_pipeline.early_stopping import hyperband_cut_points
from tune_pipeline.sampling import preview_configs, sample, trial_points
from tune_pipeline.config import REPEAT_KEY
from tune_pipeline.space import load_space, parse_space
from tune_pipeline.tune_adapter import check_tune, to_tune
from tune_pipeline.sweep import target_stopper

from conftest import ROOT, TRANSFORM_SCRIPTS


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
    fast = ROOT / "tune_pipeline" / "search_spaces" / "fast_cifar10.yaml"  # sweeps epochs over 10, 16, 24
    by_flag = load_space(fast, scheduler="asha").scheduler
    assert by_flag["max_t"] == 24 and by_flag["cut_points"] == [1, 3, 9]
    raw = yaml.safe_load(fast.read_text())
    raw["tune"]["scheduler"] = {"type": "asha"}
    assert parse_space(raw, fast).scheduler["max_t"] == 24
    result = CliRunner().invoke(app, ["search", str(fast), "--scheduler", "asha", "--dry-run"])
    assert "max_t 24" in result.output


def dry_run(path, *args):
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_scheduler_grace_period_at_or_beyond_the_last_epoch_runs_without_early_stopping(tmp_path):
    path = space_file(tmp_path, {"epochs": {"value": 3}}, tune={"scheduler": {"grace_period": 5}})
    out = dry_run(path)
    assert "scheduler fifo" in out and "note: scheduler: the first cut point, epoch 5, is at or after the last " \
                                       "epoch (3): this sweep runs without early stopping" in out, out
    # A max_t the file gives itself, below its own grace period, contradicts itself: refused, with the way out.
    path = space_file(tmp_path, {"epochs": {"value": 30}}, name="own.yaml",
                      tune={"scheduler": {"grace_period": 5, "max_t": 3}})
    refused(path, "tune.scheduler.grace_period: 5 is beyond max_t 3", "--scheduler fifo")


# 2. hyperband beyond the last epoch: docs/search-spaces.md's rule, cut points at or after the last epoch are dropped.

def test_hyperband_cut_points_at_or_after_the_last_epoch_are_dropped(tmp_path):
    path = space_file(tmp_path, {"epochs": {"value": 3}}, early_terminate={"type": "hyperband", "min_iter": 300})
    out = dry_run(path)
    assert "scheduler fifo" in out and "this sweep runs without early stopping" in out, out
    shipped = ROOT / "tune_pipeline" / "search_spaces" / "asha.yaml"  # cuts at 3, 9, 27
    assert load_space(shipped, ["epochs=3"]).scheduler["type"] == "fifo"
    assert load_space(shipped, ["epochs=10"]).scheduler["cut_points"] == [3, 9]
    assert load_space(shipped, ["epochs=4"]).scheduler["cut_points"] == [3]
    assert load_space(shipped, ["epochs=4"]).notes == []


def test_the_dry_run_shows_the_resources_and_trials_the_run_will_use(tmp_path):
    path = space_file(tmp_path, {"learning_rate": {"values": [0.1, 0.01]}}, method="grid",
                      tune={"resources": {"cpu": 2, "gpu": 0.25}})
    out = dry_run(path, "--cpus-per-trial", "1", "--gpus-per-trial", "0", "--max-concurrent", "3")
    assert "2 trials" in out and "1 CPU + 0 GPU per trial" in out and "at most 3 trials at once" in out, out
    assert [line for line in out.splitlines() if line.startswith("trial ")] == [
        "trial 1: learning_rate=0.1", "trial 2: learning_rate=0.01"]  # no more configs than trials
    many = dry_run(space_file(tmp_path, {"learning_rate": {"values": [0.1, 0.01, 0.001, 0.02]}}, name="m.yaml",
                              method="grid"))
    assert len([line for line in many.splitlines() if line.startswith("trial ")]) == 3
    assert "… and 1 more trial" in many


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
    # both, and the probabilities weigh which comes first (docs/search-spaces.md: finite spaces).
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
    assert space.scheduler["strict"] is False and to_tune(space)["scheduler"].strict is False
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
    (home / "my_transform.py").write_text(TRANSFORM_SCRIPTS[-1].read_text())
    space_file(home, {"data_dir": {"value": "mydata"},
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
    again = load_space_from_meta(ExperimentRecord.from_json(meta, "meta"))
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
    exp = Experiment(tmp_path, ExperimentRecord(metric="test_accuracy", mode="max", swept=["learning_rate", "seed"],
                                                repeat_key="seed"), trials)
    rows = grouped_rows(exp)
    assert [str(r["config"]) for r in rows] == ["learning_rate=0.1", "learning_rate=0.01"]
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

    section = (ROOT / "docs" / "search-spaces.md").read_text()
    for key in TOP_LEVEL:
        assert f"`{key}`" in section, key
    for record in RECORDS:  # the table row is the record's own line
        assert f"| `{record.name}` |" in section and record.doc in section, record.name
    assert KEY_TYPE_RULE in section


@pytest.mark.parametrize("early", [{"type": "hyperband", "min_iter": 1, "eta": float("inf")},
                                   {"type": "hyperband", "max_iter": float("nan"), "s": 2}])
def test_absurd_hyperband_numbers_are_one_line(tmp_path, early):
    refused(space_file(tmp_path, early_terminate=early), "early_terminate")


def test_a_first_cut_point_beyond_every_epoch_runs_without_early_stopping(tmp_path):
    early = {"type": "hyperband", "min_iter": 1.0e300, "eta": 1.0e300}
    assert "runs without early stopping" in dry_run(space_file(tmp_path, early_terminate=early))


# 11. wandb's refusals, each one line naming the file and key.

MIN_MAX = ["int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values", "q_log_uniform",
           "q_log_uniform_values", "inv_log_uniform", "inv_log_uniform_values"]


@pytest.mark.parametrize("distribution", MIN_MAX)
def test_min_equal_to_max_is_refused_as_wandb_refuses_it(tmp_path, distribution):
    path = space_file(tmp_path, {"weight_decay": {"distribution": distribution, "min": 2, "max": 2}})
    refused(path, str(path), "parameters.weight_decay: min 2 is not less than max 2 (wandb refuses min >= max")


@pytest.mark.parametrize("parameters,fragment", [
    ({"batch_size": {"distribution": "int_uniform", "min": 16.0, "max": 64}},
     "parameters.batch_size: int_uniform needs integer min and max, got 16.0 and 64"),
    ({"optimizer": {"values": ["sgd", "adam"], "probabilities": ["0.5", "0.5"]}},
     "parameters.optimizer.probabilities: must be numbers >= 0, got ['0.5', '0.5']"),
    ({"learning_rate": {"values": [0.1]}, "lr": {"values": [0.2]}},
     "parameters.lr: not a training key; map each to one in the tune block (tune: {rename: {lr: "),
])
def test_what_wandbs_engine_refuses_is_one_line(tmp_path, parameters, fragment):
    refused(space_file(tmp_path, parameters), fragment)


@pytest.mark.parametrize("text", ["method: random\n", "method: random\nparameters: {}\n",
                                  "method: random\nparameters:\n"])
def test_a_file_without_parameters_is_refused(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    refused(path, f"{path}: parameters: wandb requires at least one parameter")


def test_probabilities_within_numpys_isclose_pass(tmp_path):
    space = load_space(space_file(tmp_path, {"optimizer": {"values": ["sgd", "adam"],
                                                           "probabilities": [0.5, 0.49999]}}))
    assert space.params["optimizer"].spec["probabilities"] == [0.5, 0.49999]


def test_a_float_hyperband_s_is_refused(tmp_path):
    path = space_file(tmp_path, {"epochs": {"value": 30}},
                      early_terminate={"type": "hyperband", "max_iter": 27, "s": 2.0})
    refused(path, "early_terminate.s: must be an integer, got 2.0 (wandb's engine cannot run a float s)")
    assert load_space(space_file(tmp_path, {"epochs": {"value": 30}}, name="ok.yaml", early_terminate={
        "type": "hyperband", "max_iter": 27.0, "s": 2})).scheduler["cut_points"] == [3, 9]  # as wandb


def test_exponent_bounds_run_with_a_note_naming_file_and_key(tmp_path):
    path = space_file(tmp_path, {"learning_rate": {"distribution": "log_uniform", "min": -9.2, "max": -2.3}})
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert result.exit_code == 0
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {path}: parameters.learning_rate: log_uniform's min and max are base-e exponents "
                     f"(values 0.000101 to 0.1); wandb warns about this: log_uniform_values takes the values "
                     f"themselves"]


def test_a_grid_runs_each_distinct_point_once_in_wandbs_order(tmp_path):
    path = space_file(tmp_path, {"learning_rate": {"values": [0.1, 0.1, 0.01]},
                                 "batch_size": {"values": [64, 64.0, 32]}}, method="grid")
    space = load_space(path)
    assert space.trial_count() == 4
    assert trial_points(space) == [{"batch_size": 64, "learning_rate": 0.1}, {"batch_size": 64, "learning_rate": 0.01},
                                   {"batch_size": 32, "learning_rate": 0.1}, {"batch_size": 32, "learning_rate": 0.01}]
    assert len(space.notes) == 2 and all("each grid point runs once, as in wandb" in n for n in space.notes)


# 12. The dry run's trials are the run's first trials (item 12): Ray's own generator,
#     given what to_tune builds, creates them in the preview's order.

def ray_trials(space, count):
    from ray.tune.experiment import Experiment

    parts = to_tune(space)
    alg = parts["search_alg"]
    if alg is None:
        from ray.tune.search import BasicVariantGenerator
        alg = BasicVariantGenerator()
    alg.add_configurations([Experiment("x", lambda config: None, config=parts["param_space"],
                                       num_samples=parts["num_samples"], storage_path=str(space.source.parent))])
    trials = [alg.next_trial() for _ in range(count)]
    return alg, [{k: t.config[k] for k in space.swept()} for t in trials]


@pytest.mark.parametrize("parameters,method,samples", [
    ({"learning_rate": {"values": [0.1, 0.01]}, "batch_size": {"values": [32, 64]}, "epochs": {"value": 2}}, "grid", 2),
    ({"learning_rate": {"values": [0.001 * (i + 1) for i in range(101)]},   # past Ray's listing limit:
      "weight_decay": {"values": [0.0001 * i for i in range(100)]},         # Ray's own grid, in its order
      "seed": {"values": list(range(100))}}, "grid", 1),
    ({"optimizer": {"values": ["sgd", "adam", "adamw"]}, "batch_size": {"distribution": "int_uniform",
                                                                        "min": 16, "max": 18}}, "random", 20),
], ids=["grid", "huge-grid", "finite-random"])
@pytest.mark.filterwarnings("ignore:The number of pre-generated samples")  # the huge grid: as docs/search-spaces.md says
def test_the_dry_runs_trials_are_the_first_trials_ray_creates(tmp_path, parameters, method, samples):
    space = load_space(space_file(tmp_path, parameters, method=method), num_samples=samples)
    _, created = ray_trials(space, 3)
    assert created == [{k: c[k] for k in space.swept()} for c in preview_configs(space, 3)]


# 13. Random search without replacement over a finite space, reproducible and resumable.

def test_a_finite_random_search_draws_every_configuration_before_any_twice(tmp_path):
    path = space_file(tmp_path, {"optimizer": {"values": ["sgd", "adam"], "probabilities": [0.7, 0.3]},
                                 "batch_size": {"distribution": "int_uniform", "min": 30, "max": 32},
                                 "nesterov": {"values": [True, False]}}, tune={"num_samples": 30})
    points = [tuple(sorted(p.items())) for p in trial_points(load_space(path))]
    assert len(points) == 30
    for start in (0, 12, 24):  # rounds of all 12 configurations
        assert len(set(points[start:start + 12])) == len(points[start:start + 12])
    assert set(points[:12]) == set(points[12:24])


def test_the_order_follows_from_the_seed_alone_and_resume_keeps_it(tmp_path):
    parameters = {"optimizer": {"values": ["sgd", "adam", "adamw"]}, "epochs": {"values": [1, 2, 3]}}
    space = load_space(space_file(tmp_path, parameters, tune={"num_samples": 9, "sample_seed": 5}))
    again = load_space(space_file(tmp_path, parameters, name="b.yaml", tune={"num_samples": 9, "sample_seed": 5}))
    other = load_space(space_file(tmp_path, parameters, name="c.yaml", tune={"num_samples": 9, "sample_seed": 6}))
    assert trial_points(space) == trial_points(again) != trial_points(other)
    meta = json.loads(json.dumps({"space_file": str(space.source), "space": space.raw,
                                  "resolved_space": space.resolved()}))
    resumed = load_space_from_meta(ExperimentRecord.from_json(meta, "meta"))
    assert trial_points(resumed) == trial_points(space)  # tune resume's space
    # Ray saves what is left of the list with the experiment; restored, it goes on from there.
    from ray import cloudpickle  # as Ray saves it (tune.utils.util._atomic_save)
    from ray.tune.search import BasicVariantGenerator

    alg, first = ray_trials(space, 4)
    restored = BasicVariantGenerator()
    restored.set_state(cloudpickle.loads(cloudpickle.dumps(alg.get_state())))
    rest = []
    while (trial := restored.next_trial()) is not None:
        rest.append({k: trial.config[k] for k in space.swept()})
    assert first + rest == trial_points(space)


def test_continuous_spaces_still_draw_as_tune_goes(tmp_path):
    space = load_space(space_file(tmp_path, {"learning_rate": {"min": 0.01, "max": 0.1},
                                             "optimizer": {"values": ["sgd", "adam"]}}))
    assert trial_points(space) is None and to_tune(space)["search_alg"] is None


# 14. tune.rename: a file's own names, mapped; the file stays as written.

def test_rename_maps_parameters_nested_names_and_the_metric(tmp_path):
    path = space_file(tmp_path, {"lr": {"values": [0.1, 0.01]}, "sleep": {"value": 2},
                                 "optimizer": {"parameters": {"wd": {"value": 0.001}}}},
                      metric={"name": "loss", "goal": "minimize"},
                      tune={"rename": {"lr": "learning_rate", "sleep": None, "optimizer.wd": "weight_decay",
                                       "loss": "val_loss"}})
    space = load_space(path)
    assert space.params["learning_rate"].values == [0.1, 0.01] and space.fixed["weight_decay"] == 0.001
    assert (space.metric, space.mode) == ("val_loss", "min")
    assert "parameters.sleep (tune.rename: null)" in space.ignored
    assert load_space(path, ["learning_rate=0.05"]).fixed["learning_rate"] == 0.05  # --set takes our names


@pytest.mark.parametrize("parameters,rename,fragment", [
    ({"lr": {"value": 0.1}}, {"lr": "learning_rat"},
     "tune.rename.lr: 'learning_rat' is not a training key (did you mean 'learning_rate'?)"),
    ({"lr": {"value": 0.1}}, {"lr": "learning_rate", "wd": "weight_decay"},
     "tune.rename.wd: the file has no parameter or metric of that name"),
    ({"lr": {"value": 0.1}, "learning_rate": {"value": 0.2}}, {"lr": "learning_rate"},
     "parameters.learning_rate and parameters.lr both give learning_rate"),
    ({"lr": {"value": 0.1}}, {"lr": 3}, "tune.rename.lr: expected name: training_key (or name: null)"),
    ({"my lr": {"value": 0.1}}, {"my lr": "learning_rate"},
     "parameters.my lr: wandb takes parameter names of letters, digits, _ . and -"),
    ({"opt": {"parameters": {}}}, {}, "parameters.opt.parameters: expected a mapping of at least one parameter"),
])
def test_a_bad_rename_is_one_line_naming_it(tmp_path, parameters, rename, fragment):
    refused(space_file(tmp_path, parameters, tune={"rename": rename}), fragment)


def test_tune_method_only_where_the_file_has_none(tmp_path):
    path = tmp_path / "launch.yaml"
    path.write_text("parameters:\n  epochs: {values: [1, 2]}\ntune: {method: grid}\n")
    assert load_space(path).method == "grid"
    refused(space_file(tmp_path, tune={"method": "grid"}, name="both.yaml"),
            "tune.method: the file names its method already")


# 15. early_terminate stops by wandb's rule; the dry run says so and builds that scheduler.

def test_the_dry_run_describes_and_builds_wandbs_hyperband(tmp_path):
    path = space_file(tmp_path, {"epochs": {"value": 30}}, early_terminate={"type": "hyperband", "min_iter": 3})
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert "scheduler wandb's hyperband (cut points at epochs 3, 9, 27; eta 3, strict, from early_terminate)" \
        in result.output
    parts = check_tune(load_space(path))
    assert type(parts["scheduler"]).__name__ == "WandbHyperband" and parts["scheduler"].metric == "test_accuracy"


def test_max_concurrent_bounds_listed_trials_too(tmp_path):
    """Ray ignores TuneConfig's max_concurrent_trials for a generator it is
    given, so the listed trials' generator carries the bound itself."""
    grid = load_space(space_file(tmp_path, {"learning_rate": {"values": [0.1, 0.01]}}, method="grid"))
    parts = to_tune(grid, 1)
    assert parts["search_alg"].max_concurrent == 1 and parts["max_concurrent_trials"] is None
    assert to_tune(grid)["search_alg"].max_concurrent == 0  # no bound
    continuous = load_space(space_file(tmp_path, {"learning_rate": {"min": 0.01, "max": 0.1}}, name="c.yaml",
                                       tune={"max_concurrent_trials": 3}))
    assert to_tune(continuous)["max_concurrent_trials"] == 3 and to_tune(continuous, 2)["max_concurrent_trials"] == 2
