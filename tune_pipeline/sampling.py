"""The trials a space yields: one value drawn as wandb draws it (`sample`), the
trials whose order is fixed before the run (a grid in wandb's order, a finite
random search without replacement: `trial_points`, from `points.py`), and the
first trial configs the dry run shows (`preview_configs`).  No Ray.
"""

from __future__ import annotations

import itertools
import random

from tune_pipeline.config import FIELDS
from tune_pipeline.parameters import Param
from tune_pipeline.points import Axis, grid_points, random_points
from tune_pipeline.config import REPEAT_KEY
from tune_pipeline.space import SearchSpace

# Beyond this many points Ray Tune keeps no resumable search state (basic_variant's
# SERIALIZATION_THRESHOLD): such a grid runs as Ray's own grid_search, in Ray's order.
MAX_LISTED_POINTS = 1_000_000


def _typed(key: str, value):
    """A drawn value in its training key's type: 80 on a float key is 80.0,
    80.0 on an integer key is 80 (wandb passes the distribution's own type)."""
    kind = FIELDS[key].kind
    if kind is int:
        return int(round(value))
    if kind is float:
        return float(value)
    return value


def sample(param: Param, rng: random.Random):
    """One value of `param`, drawn as wandb draws it, in the key's type."""
    if param.values is not None and param.distribution == "categorical":
        return rng.choice(param.values)
    return _typed(param.name, param.record.sample(param.spec, rng))


def _finite_axis(param: Param) -> Axis | None:
    """The parameter's distinct values with their weights, or None when it draws
    from a continuum (or a quantized range, whose values are not equally likely)."""
    if param.record.categorical:
        probabilities = param.spec.get("probabilities") or [1.0] * len(param.values)
        weights: dict = {}
        for value, probability in zip(param.values, probabilities):
            weights[value] = weights.get(value, 0.0) + probability  # a value listed twice weighs twice
        kept = [v for v, w in weights.items() if w > 0]
        equal = len({weights[v] for v in kept}) == 1
        return Axis(param.name, kept, None if equal else [weights[v] for v in kept], param.origin)
    if param.distribution == "int_uniform":
        return Axis(param.name, range(int(param.spec["min"]), int(param.spec["max"]) + 1), None, param.origin)
    return None


def finite_axes(space: SearchSpace) -> list[Axis] | None:
    """A random search's swept parameters when every one takes finitely many
    values (so it draws without replacement), else None."""
    if space.method != "random" or not space.params:
        return None
    axes = [_finite_axis(p) for p in space.params.values()]
    return None if any(a is None for a in axes) else axes


def _grid_order(space: SearchSpace):
    axes = [Axis(n, p.values, None, p.origin or (n,)) for n, p in space.params.items()]
    return grid_points(axes, repeat_axis(space) or None)


def _ray_grid_order(space: SearchSpace):
    """Ray's own grid_search order (its keys sorted, the first varying fastest):
    only for a grid too large to list (MAX_LISTED_POINTS)."""
    axes = {n: p.values for n, p in space.params.items()}
    axes.update(repeat_axis(space))
    names = sorted(axes, reverse=True)
    return (dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names)))


def trial_points(space: SearchSpace, count: int | None = None) -> list[dict] | None:
    """The swept values of the first `count` trials (default: all), in the order
    the run creates them, where that order is fixed in advance: a grid (wandb's
    order) and a finite random search (without replacement, from sample_seed).
    None where Tune draws as it goes (continuous random, bayes, a huge grid)."""
    if space.method == "grid":
        if space.trial_count() > MAX_LISTED_POINTS:
            return None
        return list(itertools.islice(_grid_order(space), count))
    axes = finite_axes(space)
    if axes is None or space.num_samples > MAX_LISTED_POINTS:
        return None
    points = random_points(axes, space.num_samples, space.sample_seed, take=count)
    return [{k: _typed(k, v) for k, v in point.items()} for point in points]


def preview_configs(space: SearchSpace, count: int = 3, seed: int = 0) -> list[dict]:
    """The first trial configs, as --dry-run shows them: the run's own first
    trials for a grid and a finite random search; draws of the same
    distributions otherwise (Tune's own draws differ)."""
    points = trial_points(space, count)
    if points is None and space.method == "grid":
        points = list(itertools.islice(_ray_grid_order(space), count))
    if points is not None:
        return [{**space.fixed, **point} for point in points]
    rng = random.Random(seed)
    return [{**space.fixed, **{n: sample(p, rng) for n, p in space.params.items()}} for _ in range(count)]


def repeat_axis(space: SearchSpace) -> dict:
    """A grid repeated N times runs each point with N seeds (recorded in the
    trial config), so repeats measure the spread rather than copy one run."""
    if space.repeats <= 1:
        return {}
    base = space.fixed.get(REPEAT_KEY, 0)
    return {REPEAT_KEY: [base + i for i in range(space.repeats)]}
