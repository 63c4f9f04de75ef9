"""Real wandb sweep files from public sources (tests/wandb_corpus/): each kept
verbatim, and adapted to our training keys with the same structure.  Verbatim:
refused with exit 2, naming its foreign keys.  Adapted: accepted, its Tune
objects built, and 1,000 draws per parameter inside wandb's own range."""

import math
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.config import FIELDS
from tune_pipeline.metrics import REPORTED_METRICS
from tune_pipeline.space import check_tune, load_space, sample

from conftest import run_tune

CORPUS = Path(__file__).parent / "wandb_corpus"
VERBATIM = sorted((CORPUS / "verbatim").glob("*.yaml"))
ADAPTED = sorted((CORPUS / "adapted").glob("*.yaml"))


def source(path: Path) -> str:
    return path.read_text().splitlines()[0]


def test_the_corpus_holds_twenty_real_files_each_verbatim_and_adapted():
    assert len(VERBATIM) >= 20
    assert [p.name for p in VERBATIM] == [p.name for p in ADAPTED]
    for verbatim, adapted in zip(VERBATIM, ADAPTED):
        assert source(verbatim).startswith("# source: https://github.com/")
        assert source(adapted) == source(verbatim)
        assert adapted.read_text().splitlines()[1].startswith("# adapted: ")


def foreign_fragments(raw: dict) -> list[str]:
    """What a verbatim file has that is not ours, as the refusal must name it."""
    fragments = []
    if "method" not in raw:
        fragments.append("method: required")
    for key, spec in (raw.get("parameters") or {}).items():
        if key not in FIELDS:
            fragments.append(f"parameters.{key}: not a training key")
        elif isinstance(spec, dict) and "parameters" in spec:
            fragments.append(f"parameters.{key}: nested parameters are not supported")
    metric = (raw.get("metric") or {}).get("name")
    if metric is not None and metric not in REPORTED_METRICS:
        fragments.append(f"metric.name: {metric!r} is not a reported metric")
    return fragments


@pytest.mark.parametrize("path", VERBATIM, ids=lambda p: p.stem)
def test_a_verbatim_file_is_refused_naming_its_foreign_keys(path):
    fragments = foreign_fragments(yaml.safe_load(path.read_text()))
    assert fragments, "a verbatim file with nothing foreign belongs in the adapted set"
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def wandb_range(spec: dict) -> tuple[float, float]:
    """The values wandb's sampler (wandb/sweeps params.py ppf) can return,
    written out here independently of distributions.py."""
    lo, hi = spec["min"], spec["max"]
    distribution = spec.get("distribution") or (
        "int_uniform" if isinstance(lo, int) and isinstance(hi, int) else "uniform")
    q = spec.get("q", 1)
    return {
        "uniform": (lo, hi), "int_uniform": (lo, hi),
        "log_uniform": (math.exp(lo), math.exp(hi)),
        "q_log_uniform_values": (round(lo / q) * q, round(hi / q) * q),
    }[distribution]


@pytest.mark.parametrize("path", ADAPTED, ids=lambda p: p.stem)
def test_an_adapted_file_is_accepted_built_and_draws_inside_wandbs_range(path):
    space = load_space(path)
    parts = check_tune(space)
    assert set(space.params) <= set(parts["param_space"])
    if space.method == "bayes":
        assert "OptunaSearch" in {c.__name__ for c in type(parts["search_alg"]).__mro__}
    if "early_terminate" in space.raw:
        assert type(parts["scheduler"]).__name__ == "AsyncHyperBandScheduler"
    raw = yaml.safe_load(path.read_text()).get("parameters") or {}
    rng = random.Random(0)
    for name, param in space.params.items():
        spec = raw[name]
        if space.method == "grid" or "values" in spec:
            draws = param.values if space.method == "grid" else [sample(param, rng) for _ in range(1000)]
            allowed = param.values  # the file's values, checked (model names canonical)
            if "values" in spec:
                assert len(allowed) == len(spec["values"])
                assert set(draws) <= set(allowed)
                continue
        else:
            draws = [sample(param, rng) for _ in range(1000)]
        lo, hi = wandb_range(spec)
        assert all(lo <= d <= hi for d in draws), (name, min(draws), max(draws))


def test_no_file_of_the_corpus_gives_a_traceback_on_the_command_line(tmp_path, monkeypatch):
    """Every file through `tune search FILE --dry-run`, in this process (a
    traceback is any exception but the SystemExit of an exit code), then the
    first of each kind once more as a user runs it, in a fresh interpreter."""
    monkeypatch.chdir(tmp_path)
    bad = sorted((Path(__file__).parent / "bad_spaces").glob("*.yaml"))
    for path in VERBATIM + ADAPTED + bad:
        result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
        assert result.exception is None or isinstance(result.exception, SystemExit), (path, result.output)
        assert result.exit_code in (0, 2) and "Traceback" not in result.output, (path, result.output)
        assert (result.exit_code == 0) == (path.parent.name == "adapted"), (path, result.output)
    for path in (VERBATIM[0], ADAPTED[0], bad[0]):
        result = run_tune("search", path, "--dry-run", cwd=tmp_path, timeout=120)
        assert result.returncode == (0 if path in ADAPTED else 2), (path, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, path
