"""Search-space files: the shipped ones load, wandb's format maps to Tune,
and every bad file of the corpus is refused with all its problems at once."""

import importlib.util
import math
import random
import re
from pathlib import Path

import pytest
import yaml
from ray.tune.schedulers import AsyncHyperBandScheduler
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.errors import UserError
from tune_pipeline.distributions import DISTRIBUTIONS
from tune_pipeline.sampling import preview_configs, sample
from tune_pipeline.space import load_space
from tune_pipeline.tune_adapter import to_tune

from conftest import ROOT, SEARCH_SPACES, TRANSFORM_SCRIPTS

BAD_SPACES = sorted((Path(__file__).parent / "bad_spaces").glob("*.yaml"))


def write_space(tmp_path, data, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_the_mission_spaces_ship():
    assert {"grid.yaml", "asha.yaml", "quickstart.yaml"} <= {p.name for p in SEARCH_SPACES}


@pytest.mark.parametrize("path", SEARCH_SPACES, ids=lambda p: p.name)
def test_every_shipped_space_validates_and_previews(path):
    from tune_pipeline.shipped import stock_scripts

    space = load_space(path)
    assert space.trial_count() >= 1
    for config in preview_configs(space, 3):
        # Stock scripts by name (an installed package has them), every path absolute.
        assert config["runtime_transform_script"] in stock_scripts()
        assert Path(config["data_dir"]).is_absolute()
    for given in (str(path), path.stem):  # by path, and by name as an installed package runs it
        result = CliRunner().invoke(app, ["search", given, "--dry-run"])
        assert result.exit_code == 0, result.output
        assert f"{space.trial_count()} trials" in result.output


def test_grid_dry_run_counts_144():
    result = CliRunner().invoke(app, ["search", str(ROOT / "tune_pipeline" / "search_spaces" / "grid.yaml"), "--dry-run"])
    assert result.exit_code == 0 and "144 trials" in result.output
    space = load_space(ROOT / "tune_pipeline" / "search_spaces" / "grid.yaml")
    assert set(space.params) == {"model", "runtime_transform_script", "optimizer", "learning_rate",
                                 "momentum", "weight_decay"}
    parts = to_tune(space)
    assert parts["num_samples"] == 144
    points = parts["search_alg"]._points_to_evaluate  # the trials Ray creates, in order
    assert len({tuple(sorted(p.items())) for p in points}) == 144
    assert points[:3] == [{k: c[k] for k in space.params} for c in preview_configs(space, 3)]
    # wandb's order: sorted names (learning_rate first), the last (weight_decay) fastest
    assert [p["learning_rate"] for p in points[::48]] == space.params["learning_rate"].values
    assert [p["weight_decay"] for p in points[:2]] == space.params["weight_decay"].values


def test_asha_file_stops_by_wandbs_hyperband_rule_or_by_asha_on_request():
    space = load_space(ROOT / "tune_pipeline" / "search_spaces" / "asha.yaml")
    assert space.method == "random" and space.num_samples == 40
    s = space.scheduler
    assert (s["type"], s["eta"], s["strict"], s["max_t"]) == ("hyperband", 3, True, 30)
    assert s["cut_points"] == [3, 9, 27]
    parts = to_tune(space)
    assert type(parts["scheduler"]).__name__ == "WandbHyperband" and parts["scheduler"].bands == [3, 9, 27]
    asha = to_tune(load_space(ROOT / "tune_pipeline" / "search_spaces" / "asha.yaml", scheduler="asha"))["scheduler"]
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert sorted(t for t, _ in asha._brackets[0]._rungs) == [3, 9, 27]


@pytest.mark.parametrize("path", BAD_SPACES, ids=lambda p: p.name)
def test_bad_spaces_report_every_problem(path):
    expected = re.findall(r"^# expect: (.+)$", path.read_text(), flags=re.M)
    assert expected, "each bad space lists what it must report"
    with pytest.raises(UserError) as info:
        load_space(path)
    text = info.value.one_line()
    for fragment in expected:
        assert fragment in text, f"{fragment!r} missing from: {text}"
    assert str(path) in text and "\n" not in text
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_wandb_sweep_file_runs_as_is(tmp_path):
    wandb_file = write_space(tmp_path, """
program: train.py
controller: {type: local}
method: random
project: my-project
entity: someone
command:
  - ${env}
  - python
  - ${program}
  - ${args}
metric: {name: test_accuracy, goal: maximize}
run_cap: 5
parameters:
  learning_rate: {min: 0.0001, max: 0.1}
  batch_size: {min: 32, max: 256}
  weight_decay: {values: [1e-4, 1e-3]}
  optimizer: {values: [adam, sgd]}
  epochs: {value: 2}
""")
    space = load_space(wandb_file)
    assert space.num_samples == 5
    assert space.params["learning_rate"].distribution == "uniform"      # inferred, as wandb does
    assert space.params["batch_size"].distribution == "int_uniform"
    assert space.params["weight_decay"].values == [1e-4, 1e-3]          # YAML 1.1 strings read as floats
    assert {i.split()[0] for i in space.ignored} == {"program", "command", "entity", "controller"}
    assert space.project == "my-project"
    result = CliRunner().invoke(app, ["search", str(wandb_file), "--dry-run"])
    assert result.exit_code == 0
    assert len([line for line in result.output.splitlines() if line.startswith("ignored: ")]) == 1


# Every distribution of wandb's sweep schema (wandb/sweeps src/sweeps/config/schema.json).
WANDB_SCHEMA_DISTRIBUTIONS = {
    "constant", "categorical", "categorical_w_probabilities", "int_uniform", "uniform", "q_uniform",
    "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values", "inv_log_uniform",
    "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta",
}
NUMERIC = {  # on a key that takes any real number > 0 or >= 0
    "uniform": ("learning_rate", {"min": 0.01, "max": 0.2}),
    "q_uniform": ("learning_rate", {"min": 0.01, "max": 0.2, "q": 0.01}),
    "log_uniform": ("learning_rate", {"min": -9.2, "max": -2.3}),
    "log_uniform_values": ("learning_rate", {"min": 1.0e-4, "max": 0.1}),
    "q_log_uniform": ("weight_decay", {"min": -4.6, "max": -2.3, "q": 0.001}),
    "q_log_uniform_values": ("learning_rate", {"min": 0.001, "max": 0.1, "q": 0.001}),
    "inv_log_uniform": ("learning_rate", {"min": 2.3, "max": 9.2}),
    "inv_log_uniform_values": ("learning_rate", {"min": 1.0e-4, "max": 0.1}),
    "normal": ("warmup_epochs", {"mu": 0.05, "sigma": 0.01}),  # refused below: warmup can't be < 0
    "q_normal": ("grad_clip", {"mu": 0.05, "sigma": 0.01, "q": 0.001}),  # refused likewise
    "log_normal": ("learning_rate", {"mu": -3.0, "sigma": 0.5}),
    "q_log_normal": ("grad_clip", {"mu": -3.0, "sigma": 0.5, "q": 0.001}),
    "beta": ("label_smoothing", {"a": 2.0, "b": 5.0}),  # [0, 1]: 1 is outside [0, 1): refused
    "q_beta": ("grad_clip", {"a": 2.0, "b": 5.0, "q": 0.05}),
    "int_uniform": ("batch_size", {"min": 2, "max": 4}),
}
WANDB_RANGE = {  # what wandb's ppf can return, written out independently of distributions.py
    "uniform": (0.01, 0.2), "q_uniform": (0.01, 0.2), "log_uniform": (math.exp(-9.2), math.exp(-2.3)),
    "log_uniform_values": (1.0e-4, 0.1), "q_log_uniform": (0.0, 0.1), "q_log_uniform_values": (0.001, 0.1),
    "inv_log_uniform": (math.exp(-9.2), math.exp(-2.3)), "inv_log_uniform_values": (1.0e-4, 0.1),
    "log_normal": (0.0, math.inf), "q_log_normal": (0.0, math.inf), "beta": (0.0, 1.0), "q_beta": (0.0, 1.0),
    "int_uniform": (2, 4),
}
REFUSED_BY_KEY_CHECK = {"normal", "q_normal", "beta"}


def test_every_wandb_distribution_has_a_record():
    assert set(DISTRIBUTIONS) == WANDB_SCHEMA_DISTRIBUTIONS
    assert set(NUMERIC) | {"constant", "categorical", "categorical_w_probabilities"} == set(DISTRIBUTIONS)


@pytest.mark.parametrize("distribution", sorted(NUMERIC))
def test_distributions_sample_inside_wandbs_range_through_tune_too(tmp_path, distribution):
    key, bounds = NUMERIC[distribution]
    spec = {"distribution": distribution, **bounds}
    path = write_space(tmp_path, {"method": "random", "parameters": {key: spec}})
    if distribution in REFUSED_BY_KEY_CHECK:
        with pytest.raises(UserError, match=rf"parameters.{key}: {distribution} with .* draws values in"):
            load_space(path)
        return
    space = load_space(path, num_samples=300)
    parts = to_tune(space)
    lo, hi = WANDB_RANGE[distribution]
    ours = [sample(space.params[key], random.Random(i)) for i in range(300)]
    if distribution == "int_uniform":  # a finite space: the run's trials are listed (without replacement)
        tunes = [p[key] for p in parts["search_alg"]._points_to_evaluate]
    else:
        tunes = [parts["param_space"][key].sample() for _ in range(300)]  # what Tune calls per trial
    for values in (ours, tunes):
        assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in values), (min(values), max(values))
        assert len(set(values)) > 2  # spread, not one point
        if "q" in bounds:
            assert all(math.isclose(v / bounds["q"], round(v / bounds["q"]), abs_tol=1e-6) for v in values)


def test_int_uniform_is_inclusive_and_integer(tmp_path):
    space = load_space(write_space(tmp_path, {"method": "random", "parameters": {
        "batch_size": {"distribution": "int_uniform", "min": 2, "max": 4}}}), num_samples=300)
    samples = [p["batch_size"] for p in to_tune(space)["search_alg"]._points_to_evaluate]
    assert set(samples) == {2, 3, 4} and all(isinstance(v, int) for v in samples)
    assert all(sorted(samples[i:i + 3]) == [2, 3, 4] for i in range(0, 300, 3))  # without replacement


def test_set_pins_a_parameter_and_paths_resolve_beside_the_file(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "mine.py").write_text(
        TRANSFORM_SCRIPTS[-1].read_text())
    path = write_space(tmp_path, {"method": "grid", "parameters": {
        "runtime_transform_script": {"value": "scripts/mine.py"},
        "learning_rate": {"values": [0.1, 0.01]}}})
    space = load_space(path, ["learning_rate=0.05", "epochs=1"])
    assert space.params == {} and space.fixed["learning_rate"] == 0.05 and space.fixed["epochs"] == 1
    assert space.fixed["runtime_transform_script"] == str(tmp_path / "scripts" / "mine.py")
    assert space.trial_count() == 1


def test_bayes_needs_optuna_or_says_so(tmp_path):
    path = write_space(tmp_path, {"method": "bayes", "run_cap": 3, "parameters": {
        "learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 0.1}}})
    if importlib.util.find_spec("optuna") is None:
        with pytest.raises(UserError, match="pip install"):
            load_space(path)
    else:
        assert "OptunaSearch" in {c.__name__ for c in type(to_tune(load_space(path))["search_alg"]).__mro__}


@pytest.mark.parametrize("resources, expected", [
    (None, {"cpu": 1.0, "gpu": 0.0}),
    ({"gpu": 0.5}, {"cpu": 1.0, "gpu": 0.5}),
    ({"cpu": 2}, {"cpu": 2.0, "gpu": 0.0}),
])
def test_a_trial_gets_one_cpu_unless_the_file_says_otherwise(tmp_path, resources, expected):
    # One CPU per trial packs a trial on every core: the measured better
    # layout on CPU (BENCHMARKS.md, "CPU packing: threads per trial").
    data = {"method": "grid", "parameters": {"learning_rate": {"values": [0.1, 0.01]}}}
    if resources is not None:
        data["tune"] = {"resources": resources}
    assert load_space(write_space(tmp_path, data)).resources == expected
