"""Real wandb sweep files from public sources (tests/wandb_corpus/): each kept
verbatim, and adapted to our training keys with the same structure.  Verbatim:
refused with exit 2, naming its foreign keys; verbatim plus its one `tune`
block (rename.yaml): runs.  Adapted: accepted, its Tune objects built, and
1,000 draws per parameter inside wandb's own range."""

import math
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.config import FIELDS
from tune_pipeline.errors import UserError
from tune_pipeline.metrics import REPORTED_METRICS
from tune_pipeline.sampling import sample
from tune_pipeline.space import load_space
from tune_pipeline.tune_adapter import check_tune

from conftest import run_tune

CORPUS = Path(__file__).parent / "wandb_corpus"
VERBATIM = sorted((CORPUS / "verbatim").glob("*.yaml"))
ADAPTED = sorted((CORPUS / "adapted").glob("*.yaml"))
BLOCKS = yaml.safe_load((CORPUS / "rename.yaml").read_text())
NO_PARAMETERS = "13_examples_launch_optuna_advanced.yaml"  # its space is Python code for wandb launch


def source(path: Path) -> str:
    return path.read_text().splitlines()[0]


def test_the_corpus_holds_twenty_real_files_each_verbatim_and_adapted():
    assert len(VERBATIM) >= 20
    assert [p.name for p in VERBATIM] == [p.name for p in ADAPTED]
    for verbatim, adapted in zip(VERBATIM, ADAPTED):
        assert source(verbatim).startswith("# source: https://github.com/")
        assert source(adapted) == source(verbatim)
        assert adapted.read_text().splitlines()[1].startswith("# adapted: ")


def leaf_names(parameters: dict, prefix: str = "") -> list[str]:
    names = []
    for key, spec in parameters.items():
        if isinstance(spec, dict) and "parameters" in spec:
            names += leaf_names(spec["parameters"], f"{prefix}{key}.")
        else:
            names.append(prefix + key)
    return names


def foreign_fragments(raw: dict) -> list[str]:
    """What a verbatim file has that is not ours, as the refusal must name it."""
    fragments = []
    if "method" not in raw:
        fragments.append("method: required")
    if not raw.get("parameters"):
        fragments.append("parameters: wandb requires at least one parameter")
    foreign = [name for name in leaf_names(raw.get("parameters") or {}) if name not in FIELDS]
    fragments += [f"parameters.{name}" for name in foreign]
    if foreign:
        fragments.append("not a training key" if len(foreign) == 1 else "not training keys")
        fragments.append("tune: {rename: {")
    metric = (raw.get("metric") or {}).get("name")
    if metric is not None and metric not in REPORTED_METRICS:
        fragments.append(f"metric.name: {metric!r} is not a reported metric")
    return fragments


def with_block(path: Path, tmp_path: Path) -> Path:
    """The verbatim file as it stands, its own block appended."""
    out = tmp_path / path.name
    out.write_text(path.read_text() + "\n" + yaml.safe_dump({"tune": BLOCKS[path.name]}, sort_keys=False))
    return out


def test_every_verbatim_file_has_its_block():
    assert sorted(BLOCKS) == [p.name for p in VERBATIM]


@pytest.mark.parametrize("path", VERBATIM, ids=lambda p: p.stem)
def test_a_verbatim_file_runs_with_one_added_tune_block(tmp_path, path):
    raw = yaml.safe_load(path.read_text())
    assert "tune" not in raw
    runnable = with_block(path, tmp_path)
    assert runnable.read_text().startswith(path.read_text())  # the file is not touched, only added to
    result = CliRunner().invoke(app, ["search", str(runnable), "--dry-run"])
    if path.name == NO_PARAMETERS:  # refused, as wandb's engine refuses it
        assert result.exit_code == 2 and "parameters: wandb requires at least one parameter" in result.output
        return
    assert result.exit_code == 0, result.output
    space = load_space(runnable)
    check_tune(space)
    rename = BLOCKS[path.name]["rename"]
    for name in leaf_names(raw.get("parameters") or {}):
        key = rename.get(name, name)
        if key is None:
            assert f"parameters.{name} (tune.rename: null)" in space.ignored
        else:
            assert key in space.params or key in space.fixed
            if key not in space.params and name in (raw.get("parameters") or {}):
                spec = raw["parameters"][name]  # a constant keeps the file's value
                if isinstance(spec, dict) and "value" in spec:
                    assert space.fixed[key] == spec["value"]
    metric = (raw.get("metric") or {}).get("name")
    if metric is not None:
        assert space.metric == rename.get(metric, metric)
        assert space.mode == ("max" if raw["metric"].get("goal") == "maximize" else "min")
    lines = result.output.splitlines()
    assert sum(line.startswith("ignored: ") for line in lines) <= 1


def test_readmes_published_example_is_a_corpus_file_and_its_block():
    readme = (Path(__file__).parent.parent / "docs" / "search-spaces.md").read_text()
    path = CORPUS / "verbatim" / "20_docs_basic_structure.yaml"
    body = path.read_text().split("# verbatim below this header\n", 1)[1]
    block = yaml.safe_load(readme[readme.index(body):].split("```", 1)[0])
    assert block["tune"] == BLOCKS[path.name]


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
    if path.name == NO_PARAMETERS:
        with pytest.raises(UserError, match="parameters: wandb requires at least one parameter"):
            load_space(path)
        return
    space = load_space(path)
    parts = check_tune(space)
    assert set(space.params) <= set(parts["param_space"])
    if space.method == "bayes":
        assert "OptunaSearch" in {c.__name__ for c in type(parts["search_alg"]).__mro__}
    if "early_terminate" in space.raw:
        assert type(parts["scheduler"]).__name__ == "WandbHyperband"
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
    first valid and the first bad file once more as a user runs them, in a
    fresh interpreter (each costs seconds: the exit codes, not every file)."""
    monkeypatch.chdir(tmp_path)
    bad = sorted((Path(__file__).parent / "bad_spaces").glob("*.yaml"))
    for path in VERBATIM + ADAPTED + bad:
        result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
        assert result.exception is None or isinstance(result.exception, SystemExit), (path, result.output)
        assert result.exit_code in (0, 2) and "Traceback" not in result.output, (path, result.output)
        runs = path.parent.name == "adapted" and path.name != NO_PARAMETERS
        assert (result.exit_code == 0) == runs, (path, result.output)
    for path in (ADAPTED[0], bad[0]):
        result = run_tune("search", path, "--dry-run", cwd=tmp_path, timeout=120)
        assert result.returncode == (0 if path in ADAPTED else 2), (path, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr, path
