"""Property: whatever a search space or training config holds, validation
ends in exit 0 or exit 2 with one error line, never a traceback.

Generated values are the careless and the hostile kinds: wrong types, NaN and
infinities, huge numbers, nested lists and maps, odd and unicode keys, YAML
1.1 oddities.  The test states the contract, not today's wording, so it holds
while the messages change.  Fixed seed, bounded examples: well under a minute.
"""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.config import FIELDS, Switch, validate_config
from tune_pipeline.errors import UserError

runner = CliRunner()

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    # No subnormals: a CPU run in this process (tune train in another test) sets
    # flush-to-zero, under which Hypothesis refuses to generate them.
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False), text,
    st.sampled_from(["1e-5", "on", "yes", "~", "nan", ".inf", "-0", "0x10", "1_000", "small_cnn",
                     "grid", "random", "bayes", "log_uniform_values", "uniform", "int_uniform",
                     "q_log_uniform_values", "categorical", "maximize", "minimize", "hyperband"]),
    st.sampled_from([0, 1, 2, -1, 1e308, -1e308, 2 ** 63, 0.5, 1000]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(text, st.integers(), st.booleans()), inner, max_size=3)),
    max_leaves=8)

training_keys = st.sampled_from(sorted(FIELDS))
odd_keys = st.one_of(training_keys, text, st.integers(), st.booleans())
distributions = st.sampled_from(["constant", "categorical", "int_uniform", "uniform", "q_uniform",
                                 "log_uniform", "log_uniform_values", "q_log_uniform_values",
                                 "normal", "q_normal", "log_normal", "inv_log_uniform_values"])
param_specs = st.one_of(
    values,
    st.fixed_dictionaries({}, optional={
        "value": values, "values": st.one_of(st.lists(scalars, max_size=4), values),
        "distribution": st.one_of(distributions, values), "min": scalars, "max": scalars,
        "mu": scalars, "sigma": scalars, "q": scalars, "probabilities": values}),
)
spaces = st.fixed_dictionaries(
    {"method": st.one_of(st.sampled_from(["grid", "random", "bayes"]), values),
     "parameters": st.one_of(
         st.dictionaries(st.one_of(training_keys, odd_keys), param_specs, max_size=4), values)},
    optional={
        "metric": st.one_of(st.fixed_dictionaries({}, optional={
            "name": st.one_of(st.sampled_from(["test_accuracy", "test_loss", "val_loss"]), values),
            "goal": st.one_of(st.sampled_from(["maximize", "minimize"]), values)}), values),
        "early_terminate": st.one_of(st.fixed_dictionaries({}, optional={
            "type": st.one_of(st.just("hyperband"), values), "min_iter": scalars, "max_iter": scalars,
            "eta": scalars, "s": scalars}), values),
        "resources": st.one_of(st.fixed_dictionaries({}, optional={"cpu": scalars, "gpu": scalars}), values),
        "num_samples": scalars, "run_cap": scalars, "max_concurrent_trials": scalars,
        "name": values, "project": values, "program": values},
).flatmap(lambda d: st.dictionaries(odd_keys, values, max_size=2).map(lambda extra: {**extra, **d}))
configs = st.dictionaries(st.one_of(training_keys, odd_keys), values, max_size=6)

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def assert_clean(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}")
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.output


def dump(data) -> str | None:
    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, ValueError, RecursionError):
        return None


@pytest.fixture
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@seed(10)
@settings(FUZZ, max_examples=80)  # each is a CLI run with a script import: about 0.2 s
@given(space=spaces)
def test_search_dry_run_is_exit_0_or_one_line_exit_2(workdir, space):
    document = dump(space)
    if document is None:
        return
    path = workdir / "space.yaml"
    path.write_text(document)
    assert_clean(runner.invoke(app, ["search", str(path), "--dry-run"]))


@seed(10)
@FUZZ
@given(config=configs)
def test_training_config_validation_is_a_config_or_a_user_error(config):
    try:
        out = validate_config(config, source="fuzz.yaml")
    except UserError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
        return
    for key, value in out.items():  # what passes is what a trial can run with
        field = FIELDS[key]
        if field.kind is Switch:  # true, false or "auto": no Python type says that
            assert field.check(value) is None, (key, value)
        else:
            assert isinstance(value, field.kind), (key, value)
        if isinstance(value, float):
            assert math.isfinite(value), (key, value)


@seed(10)
@settings(FUZZ, max_examples=40)
@given(items=st.lists(st.tuples(st.one_of(training_keys, text), st.one_of(text, st.sampled_from(
    [".nan", ".inf", "[1, 2]", "{a: 1}", "1e400", "-1", "true", "'x'", "[[[", "&a [*a]", "!!python/none"]))),
    max_size=3))
def test_set_overrides_are_exit_0_or_one_line_exit_2(workdir, items):
    path = workdir / "space.yaml"
    path.write_text("method: grid\nparameters:\n  epochs: {value: 1}\n")
    args = ["search", str(path), "--dry-run"]
    for key, value in items:
        args += ["--set", f"{key}={value}"]
    assert_clean(runner.invoke(app, args))
