"""The trials of a sweep, in order, where the order is known before it runs.

- A grid runs in wandb's order: the parameters sorted by the names the file
  gives them (nested ones by their path), the last varying fastest, each
  distinct point once (wandb/sweeps grid_search.py).  A grid repeated with new
  seeds runs the whole grid, then the whole grid again.
- Random search over a finite space (every swept parameter a list of values or
  an int_uniform) draws without replacement: no configuration comes twice
  until every one has come, then a new round starts.  A value's probability
  (`probabilities`, or a value listed twice) weighs how early it tends to
  come within a round.  The order is a function of `seed` alone, so the dry
  run shows the trials the run will create, and the run repeats.

Plain data in, plain dicts out: no Ray, no search-space objects.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Iterator, Sequence

# Above this many configurations a round is not listed: draws are rejected
# when seen before (a sweep samples a small share of such a space).
ENUMERATE_LIMIT = 100_000


@dataclass(frozen=True)
class Axis:
    name: str                          # the training key
    values: Sequence                   # distinct values (a range for int_uniform)
    weights: Sequence[float] | None = None  # each value's probability; None: all equal
    order: tuple = ()                  # what wandb sorts the grid by: the file's name path


def size(axes: Sequence[Axis]) -> int:
    return math.prod(len(a.values) for a in axes)


def grid_points(axes: Sequence[Axis], repeats: dict | None = None) -> Iterator[dict]:
    """Every point of the grid in wandb's order; `repeats` ({key: [values]})
    runs the whole grid once per value."""
    ordered = sorted(axes, key=lambda a: a.order or (a.name,))
    (repeat_key, repeat_values), = (repeats or {None: [None]}).items()
    for repeat in repeat_values:
        for combo in itertools.product(*(a.values for a in ordered)):
            point = {a.name: v for a, v in zip(ordered, combo)}
            if repeat_key is not None:
                point[repeat_key] = repeat
            yield point


def random_points(axes: Sequence[Axis], count: int, seed: int, take: int | None = None) -> list[dict]:
    """The first `take` (default: all) of `count` draws without replacement, in
    rounds, reproducible from `seed`: the first draws do not depend on `take`."""
    rng = random.Random(seed)
    total = size(axes)
    draws = _rounds(axes, rng) if total <= max(ENUMERATE_LIMIT, 2 * count) else _rejection(axes, total, rng)
    return [_point(axes, index) for index in itertools.islice(draws, min(count, take or count))]


def _point(axes: Sequence[Axis], index: tuple) -> dict:
    return {a.name: a.values[i] for a, i in zip(axes, index)}


def _weight(axes: Sequence[Axis], index: tuple) -> float:
    return math.prod(a.weights[i] if a.weights is not None else 1.0 for a, i in zip(axes, index))


def _rounds(axes, rng) -> Iterator[tuple]:
    """Weighted random permutations of every configuration, one per round
    (Efraimidis & Spirakis: the largest u ** (1 / w) first)."""
    everything = list(itertools.product(*(range(len(a.values)) for a in axes)))
    weighted = any(a.weights is not None for a in axes)
    while True:
        if weighted:
            keys = [(rng.random() ** (1.0 / _weight(axes, i)), i) for i in everything]
            keys.sort(reverse=True)
            yield from (i for _, i in keys)
        else:
            round_ = everything[:]
            rng.shuffle(round_)
            yield from round_


def _rejection(axes, total, rng) -> Iterator[tuple]:
    """Independent draws, each configuration kept the first time only: for a
    space far larger than the sweep (random_points' condition)."""
    seen: set[tuple] = set()
    while True:
        index = tuple(rng.choices(range(len(a.values)), weights=a.weights)[0] if a.weights is not None
                      else rng.randrange(len(a.values)) for a in axes)
        if index not in seen:
            seen.add(index)
            yield index
            if len(seen) == total:
                seen.clear()
