"""resources.py: the one rule a trial's CPU and GPU share must meet, for the
space's tune.resources and the --cpus-per-trial/--gpus-per-trial overrides."""

import math

import pytest

from tune_pipeline.resources import DEFAULT_RESOURCES, resource_problem


@pytest.mark.parametrize("key,value", [("cpu", 1), ("cpu", 0.5), ("gpu", 0), ("gpu", 0.25), ("gpu", 2)])
def test_a_share_that_can_be_scheduled_passes(key, value):
    assert resource_problem(key, value) is None


@pytest.mark.parametrize("key,value,words", [
    ("cpu", 0, "> 0"), ("cpu", -1, "> 0"), ("gpu", -0.5, ">= 0"), ("cpu", math.nan, "finite"),
    ("gpu", math.inf, "finite"), ("cpu", True, "finite"), ("cpu", "2", "finite"), ("tpu", 1, "unknown resource"),
])
def test_a_share_that_cannot_be_scheduled_says_why(key, value, words):
    problem = resource_problem(key, value)
    assert problem is not None and words in problem


def test_the_defaults_meet_the_rule():
    assert all(resource_problem(k, v) is None for k, v in DEFAULT_RESOURCES.items())
