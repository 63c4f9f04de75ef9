"""The Ray Tune adapter: a SearchSpace as the objects a Tuner runs (param_space,
searcher, scheduler: `to_tune`), and `check_tune`, which builds them without
Ray running so what Ray or Optuna would refuse is refused before anything
starts.  Only the sweep and the dry run import this module; everything else
about a space (parsing, early stopping, sampling) runs without Ray.
"""

from __future__ import annotations

import contextlib
import random

from ray import tune

from tune_pipeline.config import FIELDS
from tune_pipeline.distributions import Distribution
from tune_pipeline.errors import UserError
from tune_pipeline.parameters import Param
from tune_pipeline.sampling import repeat_axis, sample, trial_points
from tune_pipeline.config import REPEAT_KEY
from tune_pipeline.space import SearchSpace


def _wandb_draw(param: Param):
    """A Ray Tune domain that draws `param` with wandb's sampler.

    A Domain, not `tune.sample_from(fn)`: Tune swaps a function for a
    placeholder in the search state it saves, and `Tuner.restore` cannot
    bring the function back for trials created after a resume (they got
    `('__fn_ph', ...)` as values); re-supplying it as `param_space` makes Ray
    draw again for every restored trial, finished ones included.  A Domain
    is saved with the searcher, as Tune's own distributions are."""
    from ray.tune.search.sample import Domain

    class WandbDraw(Domain):
        def __init__(self, param: Param):
            self.param = param

        def sample(self, config=None, size: int = 1, random_state=None):
            rng = random.Random()
            values = [sample(self.param, rng) for _ in range(size)]
            return values[0] if size == 1 else values

        def is_valid(self, value) -> bool:
            return True

        @property
        def domain_str(self) -> str:
            return f"{self.param.distribution}({self.param.spec})"

        def __reduce__(self):  # pickled by the function that makes it (the class is local)
            return _wandb_draw, (self.param,)

    return WandbDraw(param)


def bayes_domain(record: Distribution, b: dict, integer_key: bool):
    """The Tune domain OptunaSearch converts (the record's `bayes` mapping), or
    None where it cannot take this one."""
    if record.bayes is None:
        return None
    spec = record.bayes(b)
    if spec is None:
        return None
    name, args = spec
    if integer_key and name == "quniform":
        name, args = "qrandint", tuple(int(round(a)) for a in args)
    return getattr(tune, name)(*args)


def _tune_domain(param: Param, method: str):
    if method == "grid":
        return tune.grid_search(list(param.values))
    if param.distribution == "categorical":
        return tune.choice(list(param.values))
    if method == "bayes":
        return bayes_domain(param.record, param.spec, FIELDS[param.name].kind is int)
    return _wandb_draw(param)


def _listed_domain(param: Param):
    """What a key holds in param_space when every trial's value is listed in
    advance (points_to_evaluate): the values it may take, as Tune checks them."""
    if param.values is not None:
        return tune.choice(list(dict.fromkeys(param.values)))
    return tune.randint(int(param.spec["min"]), int(param.spec["max"]) + 1)  # int_uniform


def to_tune(space: SearchSpace, max_concurrent: int | None = None) -> dict:
    """param_space, search_alg, scheduler, num_samples and max_concurrent_trials
    for a Tuner; `max_concurrent` (default: the file's) bounds running trials."""
    limit = max_concurrent or space.max_concurrent_trials

    fixed = {k: v for k, v in space.fixed.items() if not (space.repeats > 1 and k == REPEAT_KEY)}
    search_alg = None
    points = trial_points(space)
    if points is not None:
        # Ray creates trials in this order and saves what is left of it with the
        # experiment, so `tune resume` continues the same sequence.
        from ray.tune.search import BasicVariantGenerator

        param_space = {**fixed, **{n: _listed_domain(p) for n, p in space.params.items()}}
        for name, values in repeat_axis(space).items():
            param_space[name] = tune.choice(values)
        # Ray ignores TuneConfig's max_concurrent_trials for a generator it is given.
        search_alg = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=limit or 0)
        num_samples = len(points)
    else:
        param_space = {**fixed, **{n: _tune_domain(p, space.method) for n, p in space.params.items()}}
        for name, values in repeat_axis(space).items():
            param_space[name] = tune.grid_search(values)
        num_samples = 1 if space.method == "grid" else space.num_samples
    if space.method == "bayes":
        from tune_pipeline.searcher import RestartableOptuna
        search_alg = RestartableOptuna()
    from tune_pipeline.ended_trials import Asha, Fifo

    s = space.scheduler
    if s["type"] == "asha":
        scheduler = Asha(time_attr="training_iteration", max_t=int(s["max_t"]), grace_period=int(s["grace_period"]),
                         reduction_factor=float(s["reduction_factor"]))
        # The cut points are set, not derived: wandb's (int-truncated, s-limited) bands
        # are not always grace_period * eta^k.  ASHA has no public API for its rungs:
        # this private attribute (Ray is pinned in pyproject) is set here only.
        scheduler._brackets[0]._rungs = [(t, {}) for t in reversed(s["cut_points"])]
    elif s["type"] == "hyperband":
        from tune_pipeline.hyperband import WandbHyperband
        scheduler = WandbHyperband(s["cut_points"], s["eta"], s["strict"])
    elif s["type"] == "pbt":
        from tune_pipeline.pbt_scheduler import PbtScheduler
        scheduler = PbtScheduler(s, {n: space.params[n] for n in s["mutate"]})
    else:  # fifo: every trial runs to its end
        scheduler = Fifo()
    return {"param_space": param_space, "search_alg": search_alg, "scheduler": scheduler,
            "num_samples": num_samples, "max_concurrent_trials": None if points is not None else limit}


def check_tune(space: SearchSpace) -> dict:
    """Build what the run builds, without Ray running: the search space, the
    searcher (given the space, as Tune gives it) and the scheduler."""
    try:
        parts = to_tune(space)
        if parts["search_alg"] is not None:
            with _quiet_optuna() if space.method == "bayes" else contextlib.nullcontext():
                parts["search_alg"].set_search_properties(space.metric, space.mode, parts["param_space"])
        parts["scheduler"].set_search_properties(space.metric, space.mode)
    except (AssertionError, ValueError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise UserError(f"{space.source}: Ray Tune refuses this space: {reason}") from None
    return parts


@contextlib.contextmanager
def _quiet_optuna():
    """check_tune's study is a throwaway: no "created" line.  Only for bayes:
    other methods never load Optuna, which only slows their dry run."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
