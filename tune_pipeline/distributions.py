"""wandb's sweep distributions, one record each: what the bounds mean, which
keys a distribution takes (with wandb's defaults), how it draws a value
(exactly as wandb's sweeps library does), the range of values it can produce,
what a grid enumerates, and which Ray Tune domain the bayes searcher (Optuna)
gets (named here; built by `tune_adapter.bayes_domain`).  Validation, the dry-run preview and the Tune mapping all read these
records; nothing about a distribution is stated anywhere else.

Source: wandb/sweeps, src/sweeps/params.py (HyperParameter.ppf) and
src/sweeps/config/schema.json.  `round` below is Python's, which rounds half to
even like numpy's `np.round` that wandb uses.  No Ray; numpy only for a
q_uniform grid.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from typing import Any, Callable

# The smallest positive normal float: exp() of a very negative number.  Not the
# subnormal math.ulp(0.0): once a CPU training run flushes denormals (train.py
# does, for speed), that one compares equal to 0 in this process.
TINY = sys.float_info.min


def safe_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class Distribution:
    name: str
    keys: dict                 # key -> wandb's default (None: required)
    bounds: str                # what min/max mean: "values", "exponents" or "none"
    draw: Callable[[dict, random.Random], Any]         # one value before q-rounding
    support: Callable[[dict], tuple[float, float]] | None  # extremes before q-rounding
    grid: Callable[[dict], Any] | None = None          # what method grid enumerates (a sequence)
    bayes: Callable[[dict], tuple[str, tuple]] | None = None  # Tune domain (name, args) for Optuna
    integral: bool = False     # draws are integers whatever the bounds
    doc: str = ""              # docs/search-spaces.md's line
    deprecated: bool = False   # wandb's engine warns: exponent bounds (use the _values form)
    positive: bool = False     # min and max are values on a log scale: both must be > 0

    @property
    def quantized(self) -> bool:
        return "q" in self.keys

    @property
    def constant(self) -> bool:
        return "value" in self.keys

    @property
    def categorical(self) -> bool:
        return "values" in self.keys

    @property
    def weighted(self) -> bool:
        return "probabilities" in self.keys

    @property
    def numeric(self) -> bool:
        return self.support is not None

    def sample(self, b: dict, rng: random.Random):
        """A value as wandb draws it: q-rounded, an int when q is an int."""
        value = self.draw(b, rng)
        if self.quantized:
            value = round(value / b["q"]) * b["q"]
            if isinstance(b["q"], int):
                value = int(value)
        return value

    def value_range(self, b: dict) -> tuple[float, float]:
        """The smallest and largest value a draw can be (rounding is monotone)."""
        lo, hi = self.support(b)
        if self.quantized:
            q = b["q"]
            lo, hi = (round(v / q) * q if math.isfinite(v) else v for v in (lo, hi))
        return lo, hi


def _uniform(b, rng):
    return rng.uniform(b["min"], b["max"])


def _log_uniform(lo, hi, rng):
    return safe_exp(rng.uniform(lo, hi))


def _exponents(b):
    return safe_exp(b["min"]), safe_exp(b["max"])


def _inv_exponents(b):  # exp(-U(min, max))
    return safe_exp(-b["max"]), safe_exp(-b["min"])


def _values(b):
    return b["min"], b["max"]


def _arange(b):
    """wandb's grid for q_uniform: numpy.arange(min, max, q), max excluded."""
    import numpy as np

    if (b["max"] - b["min"]) / b["q"] > 1e6:
        return range(1_000_001)  # too many to list; the caller refuses the length
    return np.arange(b["min"], b["max"], b["q"]).tolist()


def _multiples(b) -> bool:
    return all(math.isclose(b[k] / b["q"], round(b[k] / b["q"]), abs_tol=1e-9) for k in ("min", "max"))


MINMAX = {"min": None, "max": None}
Q = {"q": 1.0}
MUSIGMA = {"mu": 0.0, "sigma": 1.0}
AB = {"a": 1.0, "b": 1.0}

RECORDS = [
    Distribution("constant", {"value": None}, "none", lambda b, rng: b["value"], None,
                 doc="`value`: the same value in every trial."),
    Distribution("categorical", {"values": None}, "none", lambda b, rng: rng.choice(b["values"]), None,
                 bayes=lambda b: ("choice", (list(b["values"]),)),
                 doc="`values`: a grid axis for grid (each distinct value once, as wandb); an equally "
                     "likely choice for random and bayes (a value listed twice is twice as likely)."),
    Distribution("categorical_w_probabilities", {"values": None, "probabilities": None}, "none",
                 lambda b, rng: rng.choices(b["values"], weights=b["probabilities"])[0], None,
                 doc="`values` + `probabilities` (numbers summing to 1 within numpy.isclose, as "
                     "wandb): a weighted choice for random; in a finite space (below) they weigh how early "
                     "a value comes, not how often; refused for grid (as wandb) and bayes (Optuna cannot "
                     "weight)."),
    Distribution("int_uniform", MINMAX, "values", lambda b, rng: rng.randint(int(b["min"]), int(b["max"])),
                 _values, grid=lambda b: range(int(b["min"]), int(b["max"]) + 1),
                 bayes=lambda b: ("randint", (int(b["min"]), int(b["max"]) + 1)), integral=True,
                 doc="integers min..max, both included; min < max, both written as integers (16.0 "
                     "is refused, as wandb); a grid enumerates them all."),
    Distribution("uniform", MINMAX, "values", _uniform, _values,
                 bayes=lambda b: ("uniform", (b["min"], b["max"])),
                 doc="a real number in [min, max]."),
    Distribution("q_uniform", {**MINMAX, **Q}, "values", _uniform, _values, grid=_arange,
                 bayes=lambda b: ("quniform", (b["min"], b["max"], b["q"])) if _multiples(b) else None,
                 doc="round(uniform / q) * q; a grid enumerates min, min+q, ... below max "
                     "(numpy.arange, as wandb); bayes needs min and max multiples of q."),
    Distribution("log_uniform", MINMAX, "exponents", lambda b, rng: _log_uniform(b["min"], b["max"], rng),
                 _exponents, bayes=lambda b: ("loguniform", _exponents(b)), deprecated=True,
                 doc="exp(uniform(min, max)): the bounds are natural-log **exponents**; runs with a note, "
                     "as wandb warns."),
    Distribution("log_uniform_values", MINMAX, "values",
                 lambda b, rng: _log_uniform(math.log(b["min"]), math.log(b["max"]), rng), _values,
                 bayes=lambda b: ("loguniform", _values(b)), positive=True,
                 doc="log-uniform between the values min and max (> 0)."),
    Distribution("q_log_uniform", {**MINMAX, **Q}, "exponents",
                 lambda b, rng: _log_uniform(b["min"], b["max"], rng), _exponents, deprecated=True,
                 doc="round(log_uniform / q) * q (exponent bounds, a note as for log_uniform); not for bayes."),
    Distribution("q_log_uniform_values", {**MINMAX, **Q}, "values",
                 lambda b, rng: _log_uniform(math.log(b["min"]), math.log(b["max"]), rng), _values,
                 positive=True, doc="round(log_uniform_values / q) * q: rounded to the nearest multiple of q, so "
                     "min 1, q 8 can give 0; not for bayes."),
    Distribution("inv_log_uniform", MINMAX, "exponents", lambda b, rng: safe_exp(-rng.uniform(b["min"], b["max"])),
                 _inv_exponents, bayes=lambda b: ("loguniform", _inv_exponents(b)), deprecated=True,
                 doc="exp(-uniform(min, max)): exponent bounds, values in [exp(-max), exp(-min)]; a note as "
                     "for log_uniform."),
    Distribution("inv_log_uniform_values", MINMAX, "values",
                 lambda b, rng: safe_exp(-rng.uniform(-math.log(b["max"]), -math.log(b["min"]))), _values,
                 bayes=lambda b: ("loguniform", _values(b)), positive=True,
                 doc="values in [min, max] whose log(1/x) is uniform (min, max > 0)."),
    Distribution("normal", MUSIGMA, "none", lambda b, rng: rng.gauss(b["mu"], b["sigma"]),
                 lambda b: (-math.inf, math.inf),
                 doc="normal(mu, sigma): unbounded, so only for keys that take any real number; sigma 0 "
                     "gives mu every time (wandb's engine draws NaN); not for bayes."),
    Distribution("q_normal", {**MUSIGMA, **Q}, "none", lambda b, rng: rng.gauss(b["mu"], b["sigma"]),
                 lambda b: (-math.inf, math.inf), doc="round(normal / q) * q; not for bayes."),
    Distribution("log_normal", MUSIGMA, "none", lambda b, rng: safe_exp(rng.gauss(b["mu"], b["sigma"])),
                 lambda b: (TINY, math.inf),
                 doc="exp(normal(mu, sigma)): any positive number; sigma 0 gives exp(mu) every time (wandb's "
                     "engine draws NaN); not for bayes."),
    Distribution("q_log_normal", {**MUSIGMA, **Q}, "none",
                 lambda b, rng: safe_exp(rng.gauss(b["mu"], b["sigma"])), lambda b: (TINY, math.inf),
                 doc="round(log_normal / q) * q: can be 0; not for bayes."),
    Distribution("beta", AB, "none", lambda b, rng: rng.betavariate(b["a"], b["b"]), lambda b: (0.0, 1.0),
                 doc="beta(a, b) in [0, 1] (a, b > 0, default 1); not for bayes."),
    Distribution("q_beta", {**AB, **Q}, "none", lambda b, rng: rng.betavariate(b["a"], b["b"]),
                 lambda b: (0.0, 1.0), doc="round(beta / q) * q; not for bayes."),
]
DISTRIBUTIONS: dict[str, Distribution] = {d.name: d for d in RECORDS}
# docs/search-spaces.md's sentence above the table: what every numeric distribution's draw becomes.
KEY_TYPE_RULE = ("A drawn value takes its training key's type: 80.0 drawn for an integer key is 80, "
                 "80 drawn for a float key is 80.0 (wandb passes the distribution's own type, an int "
                 "only where `q` or the bounds are ints).")
SPEC_KEYS = frozenset({"distribution"} | {k for d in RECORDS for k in d.keys})


def integral(record: Distribution, b: dict) -> bool:
    """Whether every draw is a whole number (so an integer key may take it)."""
    if record.integral:
        return True
    return record.quantized and float(b["q"]).is_integer()

