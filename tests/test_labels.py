"""The one labeller: values told apart from their siblings, never merged."""

import pytest

from tune_pipeline.labels import Labeller, label, number

from conftest import TRANSFORM_SCRIPTS


def test_shipped_scripts_are_labelled_by_the_part_that_differs():
    labeller = Labeller(str(p) for p in TRANSFORM_SCRIPTS)
    assert sorted(labeller.labels) == ["advanced", "basic"]
    assert label(str(TRANSFORM_SCRIPTS[0])) == TRANSFORM_SCRIPTS[0].stem  # alone: its whole stem


@pytest.mark.parametrize("values, expected", [
    (["/a/b/aug.py", "/a/c/aug.py"], ["b/aug", "c/aug"]),  # same file name: the folder tells them apart
    (["/x/exp_v1_final.py", "/x/exp_v2_final.py"], ["v1", "v2"]),
    (["/x/aug.py", "/x/aug_strong.py"], ["aug", "aug_strong"]),  # a prefix that is a whole value stays
    (["resnet18", "resnet34", "small_cnn"], ["resnet18", "resnet34", "small_cnn"]),  # no cut inside a word
    (["sgd_nesterov", "sgd_plain"], ["nesterov", "plain"]),
    (["aug", "/p/aug.py"], ["/p/aug.py", "aug"]),  # a stem equal to a word: both whole
])
def test_paths_and_words_sharing_a_prefix(values, expected):
    labeller = Labeller(values)
    assert [labeller(v) for v in sorted(values)] == [expected[sorted(values).index(v)] for v in sorted(values)]
    assert len(set(labeller.labels)) == len(values)


@pytest.mark.parametrize("values, expected", [
    ([0.02, 0.1], ["0.02", "0.1"]),
    ([5.0e-4, 1.0e-5, 1.0e12], ["1e-5", "0.0005", "1e12"]),
    ([0.00211, 0.00212], ["0.00211", "0.00212"]),
    ([0.0021101, 0.0021102], ["0.0021101", "0.0021102"]),  # more digits only when needed
    ([32, 64, 128], ["32", "64", "128"]),
    ([1.0, 2.5], ["1", "2.5"]),
])
def test_numbers_in_a_short_form_that_tells_them_apart(values, expected):
    assert Labeller(values).labels == expected


def test_different_values_never_share_a_label():
    values = [1, 1.5, True, "1", None, "true", "/a/x.py", "x"]
    labels = Labeller(values).labels
    assert len(set(labels)) == len(values), labels
    assert number(3e-4) == "0.0003" and number(1.0e-4) == "0.0001" and number(2.5e-6) == "2.5e-6"


from hypothesis import given, settings
from hypothesis import strategies as st

VALUES = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32), st.integers(-1000, 1000),
                   st.sampled_from(["a_x", "a_y", "/p/q_1.py", "/p/q_2.py", "1", "true", None, True, 0.1]))


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, max_size=30))
def test_siblings_added_one_at_a_time_get_the_labels_of_all_at_once(values):
    """A live sweep labels each new trial's values as it comes (Labeller.add):
    the labels must be those of labelling every value together."""
    grown = Labeller()
    for value in values:
        grown.add(value)
    whole = Labeller(values)
    assert [grown(v) for v in values] == [whole(v) for v in values]
    assert grown.labels == whole.labels


def test_adding_numbers_relabels_only_when_a_digit_is_needed():
    import random

    rng = random.Random(0)
    labeller = Labeller()
    for _ in range(5000):
        labeller.add(10 ** rng.uniform(-4, -0.7))
    # each value labelled once, plus one relabelling of all per extra digit (a few times)
    assert labeller.relabelled < 3 * 5000, labeller.relabelled
