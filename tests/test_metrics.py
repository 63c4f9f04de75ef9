"""metrics.py's one statement of "which value is better" for a mode: the
rankings, running bests, targets and early-stopping signs all use it."""

import math

import pytest

from tune_pipeline.metrics import MAX, MIN, best_epoch, best_of, goal_word, is_better, oriented, reaches, sign


def test_higher_is_better_under_max_and_lower_under_min():
    assert is_better(0.9, 0.8, MAX) and not is_better(0.8, 0.9, MAX)
    assert is_better(0.1, 0.2, MIN) and not is_better(0.2, 0.1, MIN)
    assert oriented(3.0, MAX) > oriented(2.0, MAX) and oriented(2.0, MIN) > oriented(3.0, MIN)
    assert sign(MAX) == 1 and sign(MIN) == -1


def test_a_tie_is_not_better_so_the_first_of_ties_is_kept():
    assert not is_better(0.5, 0.5, MAX) and not is_better(0.5, 0.5, MIN)
    history = [{"epoch": 1, "val_accuracy": 0.7}, {"epoch": 2, "val_accuracy": 0.9}, {"epoch": 3, "val_accuracy": 0.9}]
    assert best_epoch(history, "val_accuracy", MAX)["epoch"] == 2


def test_best_of_skips_missing_values():
    assert best_of([None, 0.3, 0.1, None], MIN) == 0.1
    assert best_of([None, 0.3, 0.1], MAX) == 0.3
    assert best_of([None], MAX) is None and best_of([], MIN) is None


def test_a_target_is_reached_at_or_beyond_it_in_the_better_direction():
    assert reaches(0.95, 0.95, MAX) and reaches(0.96, 0.95, MAX) and not reaches(0.94, 0.95, MAX)
    assert reaches(0.2, 0.2, MIN) and reaches(0.1, 0.2, MIN) and not reaches(0.3, 0.2, MIN)
    assert reaches(math.inf, 1.0, MAX) and not reaches(math.inf, 1.0, MIN)


@pytest.mark.parametrize("mode", ["maximize", "", None, "MAX"])
def test_an_unknown_mode_is_refused_never_read_as_min(mode):
    with pytest.raises(ValueError):
        is_better(1.0, 0.0, mode)


def test_wandb_words_for_each_mode():
    assert goal_word(MAX) == "maximize" and goal_word(MIN) == "minimize"
