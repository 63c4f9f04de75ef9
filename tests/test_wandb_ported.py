"""wandb's own tests of what a sweep config means, ported.

Origin: the `sweeps` 0.3.0 sdist's tests/ (github.com/wandb/sweeps):
test_validation.py, test_config.py, test_schema.py, test_grid_search.py and
test_random_search.py.  MIT licence, Copyright (c) 2021 Weights and Biases:
tests/wandb_sweeps/LICENSE.  (Its hyperband tests: test_wandb_hyperband.py.)

wandb's cases name their parameters v1, v2, a, ...; each runs here as wandb
wrote it plus a `tune.rename` block mapping those names to training keys that
take the case's values, the only addition.  Each case asserts wandb's verdict
(refused, or run with wandb's values in wandb's order), or, where no training
key takes wandb's values or ours differs on purpose, is a documented
difference: it names the docs/search-spaces.md line (under "What differs from wandb") and
checks that the page says it.  Not ported: wandb's tests of its controller's
bookkeeping (a grid resuming from the runs it finds, multi-objective
`metrics`, hash caching, its Bayesian search), which Ray Tune's own state and
Optuna replace here.
"""

import math
import random
from pathlib import Path

import numpy as np
import pytest

from tune_pipeline.distributions import DISTRIBUTIONS
from tune_pipeline.errors import UserError
from tune_pipeline.sampling import sample, trial_points
from tune_pipeline.space import parse_space
from tune_pipeline.tune_adapter import to_tune

from conftest import ROOT

README = " ".join((ROOT / "docs" / "search-spaces.md").read_text().split())
WHERE = Path("wandb_case.yaml")


def ours(config, rename=None, overrides=()):
    """The case as a sweep file here: the space, or the refusal's one line."""
    raw = dict(config) if isinstance(config, dict) else config
    if rename is not None:
        raw = {**raw, "tune": {"rename": rename}}
    try:
        return parse_space(raw, WHERE, list(overrides))
    except UserError as exc:
        return exc.one_line()


def refused(config, fragment, rename=None):
    result = ours(config, rename)
    assert isinstance(result, str), f"accepted; wandb refuses: {config}"
    assert fragment in result, result
    return result


def accepted(config, rename=None, overrides=()):
    result = ours(config, rename, overrides)
    assert not isinstance(result, str), result
    return result


def documented(line):
    """A difference docs/search-spaces.md states (whitespace as wrapped there)."""
    assert " ".join(line.split()) in README, line


TYPED = "every value must pass its key's check"   # docs/search-spaces.md: What differs from wandb
IGNORED_KEYS = "wandb's infrastructure keys are ignored, not validated"
STRING_NUMBERS = "A string that reads as a number (`min: \"0\"`, YAML 1.1's `1e-5`) is a number here"
WITHOUT_REPLACEMENT = "Random search over a finite space draws without replacement (above)"
HYPERBAND_NO_METRIC = "hyperband runs without a `metric` on the default one"


# ---------------------------------------------------------------- test_validation.py

@pytest.mark.parametrize("method", ["bayes", "grid", "random"])
def test_validation_disable(method):
    config = {"metric": {"name": "loss", "goal": "minimise"}, "method": method,
              "parameters": {"v1": {"values": ["a", "b", "c"]}}}
    refused(config, "metric.goal: must be maximize or minimize, got 'minimise'",
            rename={"loss": "val_loss", "v1": "data_dir"})


def test_validation_not_enough_params():
    refused({"method": "random", "parameters": {}}, "parameters: wandb requires at least one parameter")
    refused({"method": "random"}, "parameters: wandb requires at least one parameter")


def test_minmax_type_inference():
    space = accepted({"method": "random", "parameters": {"a": {"min": 0, "max": 1, "distribution": "uniform"}}},
                     rename={"a": "weight_decay"})
    assert space.params["weight_decay"].distribution == "uniform"
    refused({"method": "random", "parameters": {"a": {"min": 0.0, "max": 1.0, "distribution": "int_uniform"}}},
            "int_uniform needs integer min and max, got 0.0 and 1.0", rename={"a": "max_train_images"})


@pytest.mark.parametrize("controller_type", ["cloud", "local", "invalid"])
def test_controller(controller_type):
    space = accepted({"controller": {"type": controller_type}, "method": "random",
                      "parameters": {"a": {"values": [1, 2, 3, 4]}}}, rename={"a": "epochs"})
    assert any(i.startswith("controller") for i in space.ignored)
    if controller_type == "invalid":  # wandb refuses it
        documented(IGNORED_KEYS)
        documented("wandb refuses `controller: {type: invalid}`")


def test_invalid_config():
    refused("this is a totally invalid config", "expected a mapping with method, metric and parameters")


def test_sweepconfig_no_method_baseline_validation():
    refused({"parameters": {"a": {"values": [1, 2, 3, 4]}}}, "method: required", rename={"a": "epochs"})


def test_invalid_early_stopping():
    config = {"method": "bayes", "parameters": {"v1": {"values": ["a", "b", "c"]}}}
    rename = {"v1": "data_dir"}
    # wandb's stop_runs refuses a config without early_terminate or metric; here that is a
    # sweep without early stopping, and one on the default metric.
    assert accepted(config, rename).scheduler["type"] == "fifo"
    with_et = {**config, "early_terminate": {"type": "hyperband", "min_iter": 1}}
    assert accepted(with_et, rename, ["epochs=3"]).metric == "val_accuracy"
    documented(HYPERBAND_NO_METRIC)
    config["metric"] = {"name": "loss", "goal": "minimise"}
    rename["loss"] = "val_loss"
    refused({**config, "early_terminate": {"type": "invalid type"}}, "early_terminate.type: only hyperband",
            rename)
    # wandb's schema refuses the extra key (its stop_runs, unvalidated, drops it)
    refused({**config, "metric": {"name": "loss", "goal": "minimize"},
             "early_terminate": {"type": "hyperband", "extra_key": 1234, "min_iter": 100}},
            "early_terminate.extra_key: unknown key", rename)


def test_param_dict():
    """Nested parameters: mapped by their dotted path; the same leaf name at two
    levels is two parameters."""
    config = {"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
              "parameters": {"a": {"parameters": {"b": {"values": [1, 2]},
                                                  "c": {"parameters": {"d": {"value": 1}}}}}}}
    space = accepted(config, {"loss": "val_loss", "a.b": "epochs", "a.c.d": "seed"})
    assert space.params["epochs"].values == [1, 2] and space.fixed["seed"] == 1
    config["parameters"] = {"a": {"parameters": {"b": {"value": 1}, "c": {"parameters": {"d": {"value": 2}}}}},
                            "b": {"values": [2, 3]}}
    space = accepted(config, {"loss": "val_loss", "a.b": "lr_step_size", "a.c.d": "seed", "b": "epochs"})
    assert (space.fixed["lr_step_size"], space.fixed["seed"], space.params["epochs"].values) == (1, 2, [2, 3])


def test_invalid_minmax_with_no_sweepconfig_validation():
    refused({"method": "random", "parameters": {"a": {"max": 0, "min": 1}}}, "min 1 is not less than max 0",
            rename={"a": "max_train_images"})


@pytest.mark.parametrize("parameter_type", ["log_uniform", "q_log_uniform", "inv_log_uniform"])
def test_that_old_distributions_warn(parameter_type):
    """wandb lists them as violations, which its CLI prints as a warning and runs."""
    space = accepted({"method": "random", "parameters": {"a": {"min": 1, "max": 2, "distribution": parameter_type}}},
                     rename={"a": "weight_decay"})
    assert any(f"parameters.a (as weight_decay): {parameter_type}'s min and max are base-e exponents" in note
               and f"{parameter_type}_values takes the values themselves" in note for note in space.notes)


@pytest.mark.parametrize("parameter_type", ["log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"])
def test_that_minmax_validation_fails_on_loguniform_values_types(parameter_type):
    refused({"method": "random", "parameters": {"a": {"min": 2, "max": 1, "distribution": parameter_type}}},
            "min 2 is not less than max 1", rename={"a": "weight_decay"})


@pytest.mark.parametrize("run_cap", [-1, 0, 1, 300, -0.3, 5.1, "1"])
def test_that_run_cap_validation_works_for_min_value(run_cap):
    config = {"method": "random", "parameters": {"a": {"values": [1, 2, 3, 4]}}, "run_cap": run_cap}
    if isinstance(run_cap, int) and run_cap > 0:
        assert accepted(config, {"a": "epochs"}).num_samples == run_cap
    else:
        refused(config, "run_cap: must be an integer >= 1", {"a": "epochs"})


# ---------------------------------------------------------------- test_config.py

def test_invalid_sweep_config_nonuniform_array_elements_categorical():
    """wandb accepts values [None, 2, 3, "a", (2, 3)]: no training key takes them all."""
    refused({"method": "grid", "parameters": {"v1": {"values": [None, 2, 3, "a", [2, 3]]}}},
            "parameters.v1 (as epochs).values[0]: must be an integer, got None", {"v1": "epochs"})
    documented(TYPED)


def test_min_max_validation():
    result = refused({"method": "random", "parameters": {"v1": {"max": 3, "min": 5}, "v2": {"min": 5, "max": 6}}},
                     "parameters.v1 (as epochs): min 5 is not less than max 3", {"v1": "epochs", "v2": "seed"})
    assert "v2" not in result


@pytest.mark.parametrize("bounds", [{"min": None, "max": 5}, {"min": 0, "max": None}, {"min": "0", "max": 1},
                                    {"min": [0], "max": 1}])
def test_non_numeric_min_max_is_a_violation_not_a_crash(bounds):
    config = {"method": "random", "parameters": {"v1": bounds}}
    if bounds["min"] == "0":  # a string that reads as a number is a number here
        assert accepted(config, {"v1": "weight_decay"}).params["weight_decay"].spec["min"] == 0
        documented(STRING_NUMBERS)
    elif None in bounds.values():
        refused(config, f"parameters.v1 (as weight_decay): distribution uniform needs "
                        f"{'min' if bounds['min'] is None else 'max'}", {"v1": "weight_decay"})
    else:
        refused(config, "parameters.v1 (as weight_decay).min: must be a finite number, got [0]",
                {"v1": "weight_decay"})


def test_negative_sigma_validation():
    refused({"method": "random", "parameters": {"v1": {"mu": 0.1, "sigma": -0.1, "distribution": "normal"}}},
            "sigma must be >= 0", {"v1": "warmup_epochs"})


def test_missing_parameters_section():
    refused({"method": "random"}, "parameters: wandb requires at least one parameter")


def test_wrong_prob_length():
    refused({"method": "random", "parameters": {"v1": {"values": [1, 2, 3], "probabilities": [0.1, 0.2, 0.3, 0.4]}}},
            "probabilities: must be a list of 3 numbers", {"v1": "epochs"})


def test_irregular_probs():
    refused({"method": "random", "parameters": {"v1": {"values": [1, 2, 3], "probabilities": [0.1, 0.2, 0.3]}}},
            "probabilities: must sum to 1, they sum to 0.6", {"v1": "epochs"})


def test_categorical_prob_grid():
    refused({"method": "grid", "parameters": {"v1": {"values": [1, 2, 3], "probabilities": [0.2, 0.2, 0.6]}}},
            "probabilities: method grid runs every value once", {"v1": "epochs"})


@pytest.mark.parametrize("extra", [
    {"metrics": [{"name": "a"}, {"name": "b"}]},                                # test_metric_and_metrics_mutually_exclusive
    {"scheduler": {"engine": "wandb"}, "early_terminate": {"type": "hyperband", "min_iter": 1}},
    # test_scheduler_and_early_terminate_mutually_exclusive
    {"scheduler": {"engine": "optuna"}},                                        # ..._requires_custom_method
])
def test_scheduler_and_metrics_keys(extra):
    config = {"method": "random", "metric": {"name": "loss", "goal": "minimize"},
              "parameters": {"v1": {"values": [1, 2]}}, **extra}
    space = accepted(config, {"loss": "val_loss", "v1": "epochs"}, ["epochs=3"] if "early_terminate" in extra else ())
    assert any(i.startswith(next(k for k in extra if k != "early_terminate")) for i in space.ignored)
    documented(IGNORED_KEYS)


def test_parameters_not_required_when_scheduler_defines_search_space():
    """wandb accepts a custom engine's search space in place of parameters; here it is refused."""
    refused({"method": "custom", "scheduler": {"engine": "optuna", "source": "s.py", "search_space": "space"}},
            "parameters: wandb requires at least one parameter")
    documented("`scheduler.search_space` does not stand in for `parameters`")


# ---------------------------------------------------------------- test_schema.py

@pytest.mark.parametrize("spec,distribution,key", [
    ({"min": 0, "max": 1}, "int_uniform", "max_train_images"),         # test_json_type_inference_int_uniform
    ({"min": 0.0, "max": 1.0}, "uniform", "weight_decay"),             # ..._uniform
    ({"min": 0.0, "max": 1}, "uniform", "weight_decay"),               # ..._uniform_mixed
    ({"min": 0, "max": 1.0}, "uniform", "weight_decay"),
    ({"values": [1, 2, 3]}, "categorical", "epochs"),                  # ..._categorical
    ({"distribution": "uniform", "min": 0, "max": 1}, "uniform", "weight_decay"),  # test_uniform_with_integer_min_max
])
def test_json_type_inference(spec, distribution, key):
    space = accepted({"method": "random", "parameters": {"p": spec}}, {"p": key})
    assert space.params[key].distribution == distribution


def test_json_type_inference_constant():
    space = accepted({"method": "random", "parameters": {"p": {"value": "abcd"}}}, {"p": "data_dir"})
    assert Path(space.fixed["data_dir"]).name == "abcd" and "data_dir" not in space.params


@pytest.mark.parametrize("spec,key,filled", [
    ({"distribution": "log_normal"}, "learning_rate", {"mu": 0, "sigma": 1}),   # ..._and_imputation_lognormal
    ({"distribution": "q_beta"}, "grad_clip", {"a": 1, "b": 1, "q": 1}),        # ..._q_beta
    ({"distribution": "beta"}, "weight_decay", {"a": 1, "b": 1}),               # ..._beta
])
def test_json_type_inference_and_imputation(spec, key, filled):
    space = accepted({"method": "random", "parameters": {"p": spec}}, {"p": key})
    assert space.params[key].spec == filled


@pytest.mark.parametrize("distribution,filled", [("normal", {"mu": 0, "sigma": 1}),
                                                 ("q_normal", {"mu": 0, "sigma": 1, "q": 1})])
def test_json_type_inference_and_imputation_unbounded(distribution, filled):
    """wandb's normal and q_normal defaults (test_json_type_inference_and_imputation_normal,
    ..._q_normal); no training key takes an unbounded value, so the record is checked."""
    assert DISTRIBUTIONS[distribution].keys == filled
    documented(TYPED)


def test_totally_invalid_config():
    refused({"method": "random", "parameters": {"p": {"invalid": "this config is not valid"}}},
            "parameters.p (as epochs).invalid: unknown key", {"p": "epochs"})


def test_categorical_hyperparameter_no_values():
    refused({"method": "random", "parameters": {"p": {"values": []}}}, "values: must be a non-empty list",
            {"p": "epochs"})


def test_invalid_metric():
    refused({"method": "grid", "metric": "{'goal': 'maximize', 'name': 'val/loss'}",
             "parameters": {"a": {"values": [1, 2, 3, 4]}}}, "metric: expected {name: ..., goal:", {"a": "epochs"})


def test_hyperband_incremental_corrects_goal():
    """wandb's stop_runs replaces a misspelt goal ("minimise") with the default; its
    validation (SweepConfig) refuses it, as here."""
    refused({"method": "random", "metric": {"goal": "minimise", "name": "val/loss"},
             "early_terminate": {"min_iter": 3, "type": "hyperband"},
             "parameters": {"lr": {"values": ["0.001", "0.005", "0.01"]}}},
            "metric.goal: must be maximize or minimize", {"val/loss": "val_loss", "lr": "learning_rate"})


# ---------------------------------------------------------------- test_grid_search.py

def grid(config, rename):
    space = accepted(config, rename)
    return [tuple(point[rename[name]] for name in ("v1", "v2") if rename.get(name) in space.params)
            for point in trial_points(space)]


def test_grid_from_start_in_wandbs_order():
    config = {"method": "grid", "parameters": {"v1": {"values": [1, 2, 3]}, "v2": {"values": [4, 5]}}}
    # wandb's answers (its kernel checks the set; its product order is this one)
    assert grid(config, {"v1": "epochs", "v2": "batch_size"}) == [(1, 4), (1, 5), (2, 4), (2, 5), (3, 4), (3, 5)]
    # the order follows the file's names, not the training keys they map to
    assert grid(config, {"v1": "seed", "v2": "batch_size"}) == [(1, 4), (1, 5), (2, 4), (2, 5), (3, 4), (3, 5)]


def test_grid_search_anaconda1_order():
    config = {"method": "grid", "parameters": {"v1": {"values": ["a", "b", "c", "a"]}, "v2": {"values": [1, 2, 3]}}}
    points = grid(config, {"v1": "data_dir", "v2": "epochs"})
    assert [(Path(d).name, e) for d, e in points] == [
        ("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3), ("c", 1), ("c", 2), ("c", 3)]


def test_grid_search_duplicated_values_are_not_duplicated_in_answer():
    """wandb's values [None, 2, 3, "a", (2, 3), 3] x ["a", "b", "c'"]: 15 runs, the
    repeated 3 once.  No key takes the mixed values; the repeat is kept."""
    config = {"method": "grid", "parameters": {"v1": {"values": [1, 2, 3, 4, 5, 3]},
                                               "v2": {"values": ["a", "b", "c'"]}}}
    points = grid(config, {"v1": "epochs", "v2": "data_dir"})
    assert len(points) == 15 and len(set(points)) == 15
    documented(TYPED)


def test_grid_search_constant_val_is_propagated():
    space = accepted({"method": "grid", "parameters": {"v1": {"values": ["a", "b", "c'"]}, "v2": {"value": 1}}},
                     {"v1": "data_dir", "v2": "epochs"})
    assert all(point["data_dir"] for point in trial_points(space)) and space.fixed["epochs"] == 1


def test_grid_search_constant_vals_only():
    space = accepted({"method": "grid", "parameters": {"v1": {"value": "a"}, "v2": {"value": 2}}},
                     {"v1": "data_dir", "v2": "epochs"})
    assert space.trial_count() == 1 and trial_points(space) == [{}]


def test_grid_search_with_list_and_dict_values():
    """wandb's grids of lists, tuples and dicts (test_grid_search_with_list_values,
    ..._dict_val_is_propagated, ..._keeps_list_and_tuple_values_distinct): no training key takes them."""
    refused({"method": "grid", "parameters": {"v1": {"values": ["", [9, 5]]}, "v2": {"values": [256, 512]}}},
            "values[1]: must be a string, got [9, 5]", {"v1": "data_dir", "v2": "batch_size"})
    documented(TYPED)


def test_int_uniform_bounded_grid_search():
    """wandb's bounds -52..10, moved by +53 (no training key is negative): every integer, both ends."""
    space = accepted({"method": "grid", "parameters": {"v1": {"distribution": "int_uniform", "min": 1, "max": 63},
                                                       "v2": {"value": "test"}}}, {"v1": "epochs", "v2": "data_dir"})
    assert [p["epochs"] for p in trial_points(space)] == list(range(1, 64))


def test_q_uniform_bounded_grid_search():
    """wandb's bounds -9.211..23.23 by 2.341, moved by +10: numpy.arange, max excluded."""
    space = accepted({"method": "grid", "parameters": {
        "v1": {"distribution": "q_uniform", "min": 0.789, "max": 33.23, "q": 2.341}, "v2": {"value": "test"}}},
        {"v1": "weight_decay", "v2": "data_dir"})
    assert [p["weight_decay"] for p in trial_points(space)] == np.arange(0.789, 33.23, 2.341).tolist()


def test_yaml_hash_float():
    """3000000.0 and 3000000 are one grid point (wandb's yaml_hash;
    test_grid_search_matches_integer_float_values)."""
    for key in ("max_train_images", "weight_decay"):
        space = accepted({"method": "grid", "parameters": {"v1": {"values": [3000000, 3000000.0, 7]}}}, {"v1": key})
        assert [p[key] for p in trial_points(space)] == [3000000, 7]
        assert any("listed more than once: each grid point runs once, as in wandb" in n for n in space.notes)


@pytest.mark.parametrize("values", [[True, 1], [float("nan"), 1]])
def test_grid_search_bool_int_and_nan_values(values):
    """wandb keeps True and 1 apart and runs NaN once; no key takes True and 1, or NaN."""
    assert isinstance(ours({"method": "grid", "parameters": {"v1": {"values": values}}}, {"v1": "epochs"}), str)
    documented(TYPED)


def test_empty_runs_suggests_first_grid_point():
    space = accepted({"method": "grid", "parameters": {"v1": {"values": [1, 2]}, "v2": {"values": [3, 4]}}},
                     {"v1": "epochs", "v2": "seed"})
    assert trial_points(space, 1) == [{"epochs": 1, "seed": 3}]
    assert to_tune(space)["search_alg"]._points_to_evaluate[0] == {"epochs": 1, "seed": 3}


# ---------------------------------------------------------------- test_random_search.py

def draws(distribution, spec, n, seed=0):
    """n draws as a sweep's trial draws them (space.sample: the record's draw)."""
    record = DISTRIBUTIONS[distribution]
    filled = {k: spec.get(k, default) for k, default in record.keys.items()}
    rng = random.Random(seed)
    return np.asarray([record.sample(filled, rng) for _ in range(n)], dtype=float)


def same_distribution(pred, true, bins):
    """wandb's check_that_samples_are_from_the_same_distribution: every bin's
    counts within 5 sigma (Poisson)."""
    n_pred, _ = np.histogram(pred, bins=bins)
    n_true, _ = np.histogram(true, bins=bins)
    denom = np.sqrt(n_pred + n_true)
    denom[np.isclose(denom, 0)] = 1
    sigma = np.abs(n_pred - n_true) / denom
    sigma[~np.isfinite(sigma)] = 0
    np.testing.assert_array_less(sigma, 5)


def on_grid(pred, q):
    remainder = np.remainder(pred, q)
    assert np.all(np.isclose(remainder, 0) | np.isclose(remainder, q))


RNG = np.random.default_rng(0)  # wandb draws its reference samples unseeded


@pytest.mark.parametrize("values,probs", [(list(range(5)), [0.2] * 5), (list(range(3)), [0.5, 0.0, 0.5]),
                                          (list(range(5)), [0.1, 0.25, 0.15, 0.2, 0.3])])
def test_rand_categorical(values, probs):
    n = 1000
    pred = list(draws("categorical_w_probabilities", {"values": values, "probabilities": probs}, n))
    for value, p in zip(values, probs):
        assert abs(pred.count(value) - n * p) <= 3 * np.sqrt(n * p)
    # A sweep of 1000 trials over these 5 (or 3) values draws them without replacement:
    space = accepted({"method": "random", "run_cap": n,
                      "parameters": {"v1": {"values": values, "probabilities": probs}}}, {"v1": "seed"})
    run = [p["seed"] for p in trial_points(space)]
    drawn = [v for v, p in zip(values, probs) if p > 0]
    assert all(run.count(v) == n // len(drawn) for v in drawn)
    documented(WITHOUT_REPLACEMENT)


def test_rand_uniform():
    same_distribution(draws("uniform", {"min": 3.0, "max": 5.0}, 1000), RNG.uniform(3.0, 5.0, 1000),
                      np.linspace(3.0, 5.0, 10))


def test_rand_normal():
    same_distribution(draws("normal", {}, 1000), RNG.normal(0, 1, 1000), np.linspace(-2, 2, 10))


def test_rand_lognormal():
    same_distribution(draws("log_normal", {"mu": 2, "sigma": 3}, 1000), RNG.lognormal(2, 3, 1000),
                      np.logspace(-1, 5, 30))


@pytest.mark.parametrize("distribution", ["log_uniform", "log_uniform_values"])
def test_rand_loguniform(distribution):
    lo, hi = 5.0, 100
    bounds = {"min": np.log(lo), "max": np.log(hi)} if distribution == "log_uniform" else {"min": lo, "max": hi}
    pred = draws(distribution, bounds, 1000)
    same_distribution(pred, np.exp(RNG.uniform(np.log(lo), np.log(hi), 1000)),
                      np.logspace(np.log10(lo), np.log10(hi), 10))
    assert pred.min() >= lo and pred.max() <= hi


@pytest.mark.parametrize("distribution", ["inv_log_uniform", "inv_log_uniform_values"])
def test_rand_inv_loguniform(distribution):
    """(wandb's second half checks its own cdf function, which has no counterpart here.)"""
    lo, hi = 1e-15, 1e20
    bounds = ({"min": np.log(1 / hi), "max": np.log(1 / lo)} if distribution == "inv_log_uniform"
              else {"min": lo, "max": hi})
    pred = draws(distribution, bounds, 20000)
    true = 1 / np.exp(RNG.uniform(np.log(1 / hi), np.log(1 / lo), 20000))
    same_distribution(pred, true, np.logspace(np.log10(lo), np.log10(hi), 10))
    assert pred.min() >= lo and pred.max() <= hi * (1 + 1e-12)


@pytest.mark.parametrize("q", [0.1, 1, 10])
def test_rand_q_lognormal(q):
    pred = draws("q_log_normal", {"mu": 2, "sigma": 2, "q": q}, 1000)
    same_distribution(pred, np.round(RNG.lognormal(2, 2, 1000) / q) * q,
                      np.logspace(np.log10(np.exp(-2)), np.log10(np.exp(6)), 10))
    on_grid(pred, q)


@pytest.mark.parametrize("q", [0.1, 1, 10])
def test_rand_q_normal(q):
    pred = draws("q_normal", {"mu": 4, "sigma": 2, "q": q}, 1000)
    same_distribution(pred, np.round(RNG.normal(4, 2, 1000) / q) * q, np.linspace(0, 8, 10))
    on_grid(pred, q)


@pytest.mark.parametrize("q", [0.1, 1, 10])
def test_rand_q_uniform(q):
    pred = draws("q_uniform", {"min": 0, "max": 100, "q": q}, 1000)
    same_distribution(pred, np.round(RNG.uniform(0, 100, 1000) / q) * q, np.linspace(0, 100, 10))
    on_grid(pred, q)


@pytest.mark.parametrize("q", [0.1, 1, 10])
def test_rand_q_loguniform_values(q):
    pred = draws("q_log_uniform_values", {"min": 0.1, "max": 100, "q": q}, 1000)
    true = np.round(np.exp(RNG.uniform(np.log(0.1), np.log(100), 1000)) / q) * q
    same_distribution(pred, true, np.logspace(-1, 2, 10))
    on_grid(pred, q)


@pytest.mark.parametrize("q", [0.1, 1, 10])
def test_rand_q_loguniform(q):
    pred = draws("q_log_uniform", {"min": np.log(0.1), "max": np.log(100), "q": q}, 1000)
    true = np.round(np.exp(RNG.uniform(np.log(0.1), np.log(100), 1000)) / q) * q
    same_distribution(pred, true, np.logspace(-1, 2, 10))
    on_grid(pred, q)


def test_rand_q_beta():
    pred = draws("q_beta", {"a": 2, "b": 5, "q": 0.1}, 1000)
    same_distribution(pred, np.round(RNG.beta(2, 5, 1000) / 0.1) * 0.1, np.linspace(0, 1, 10))
    on_grid(pred, 0.1)


def test_rand_beta():
    same_distribution(draws("beta", {"a": 2, "b": 5}, 1000), RNG.beta(2, 5, 1000), np.linspace(0, 1, 10))


def test_a_sweeps_draws_are_the_records_draws_in_the_keys_type():
    """The port above samples the records; a trial's value is that draw in its key's type."""
    space = accepted({"method": "random", "parameters": {"v1": {"distribution": "q_uniform", "min": 8, "max": 64,
                                                                "q": 8}}}, {"v1": "weight_decay"})
    rng = random.Random(1)
    value = sample(space.params["weight_decay"], rng)
    assert isinstance(value, float) and value == float(draws("q_uniform", {"min": 8, "max": 64, "q": 8}, 1, 1)[0])
    assert math.isclose(value % 8, 0)
