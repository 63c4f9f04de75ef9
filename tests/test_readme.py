"""README.md and the docs/ pages stay true: every command line and YAML block
they show is one the tool takes, every key, command, option, shipped file and
model is documented, every link resolves inside the repository, and README
stays a short entry with the two set-up commands CI runs."""

import re
import shlex
import shutil
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.config import FIELDS
from tune_pipeline.models import list_models

from conftest import ROOT, SEARCH_SPACES, TRANSFORM_SCRIPTS

README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
EVERY_PAGE = "\n".join(page.read_text() for page in PAGES)
CLI = typer.main.get_command(app)
page_ids = [str(page.relative_to(ROOT)) for page in PAGES]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def command_lines(text: str) -> list[str]:
    """Each `tune ...` line of the page's bash blocks, its comment cut off."""
    lines = []
    for block in blocks(text, "bash"):
        for line in block.splitlines():
            line = line.split(" # ", 1)[0].strip()
            if line.startswith("tune "):
                lines.append(line)
    return lines


def slug(heading: str) -> str:
    """A heading's anchor as GitHub writes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", page.read_text(), flags=re.M)}


def test_readme_is_a_short_entry_linking_every_docs_page():
    assert len(README.splitlines()) < 250
    assert DOCS, "docs/ holds no page"
    for page in DOCS:
        assert f"](docs/{page.name})" in README, f"README does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=page_ids)
def test_every_link_resolves_to_a_file_in_the_repository(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(ROOT), f"{target} points outside the repository"
        assert resolved.is_file(), f"{target}: no such file"
        if anchor:
            assert anchor in anchors(resolved), f"{target}: no such heading"


@pytest.mark.parametrize("key", FIELDS)
def test_every_training_key_is_documented_with_its_default(key):
    training = (ROOT / "docs" / "training.md").read_text()
    row = re.search(rf"^\| `{key}` \| `?([^|`]*)`? \|", training, flags=re.M)
    assert row, f"docs/training.md's key table lacks {key}"
    default = FIELDS[key].default
    shown = row.group(1).strip()
    if isinstance(default, bool):
        assert shown == str(default).lower()
    elif isinstance(default, float):
        assert float(shown) == default
    else:
        assert shown == str(default)


@pytest.mark.parametrize("name", sorted(CLI.commands))
def test_every_command_has_an_example_and_every_option_is_documented(name):
    assert re.search(rf"^tune {name}\b", README, flags=re.M) or f"`tune {name}`" in README, name
    assert re.search(rf"^tune {name}\b", EVERY_PAGE, flags=re.M), f"no example of tune {name}"
    for param in CLI.commands[name].params:
        for option in param.opts + param.secondary_opts:
            if option.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", EVERY_PAGE), f"tune {name} {option}"


@pytest.mark.parametrize("page", PAGES, ids=page_ids)
def test_every_command_line_shown_is_one_the_cli_takes(page):
    """Parsed as the command line would parse it: the command, each option and
    each option's value (a choice, a number) must be accepted."""
    for line in command_lines(page.read_text()):
        words = shlex.split(line)[1:]
        assert words[0] in CLI.commands, line
        try:
            CLI.commands[words[0]].make_context(words[0], words[1:])
        except Exception as exc:  # the CLI's own usage error, whatever its class
            pytest.fail(f"{page.name}: {line}: {exc}")


# A `tune:` fragment is checked inside a space that sweeps what it may mutate.
FRAGMENT_BASE = {"method": "random",
                 "parameters": {"learning_rate": {"distribution": "log_uniform_values", "min": 0.01, "max": 0.1},
                                "weight_decay": {"values": [1.0e-4, 5.0e-4]},
                                "epochs": {"value": 10}}}


@pytest.mark.parametrize("page", PAGES, ids=page_ids)
def test_every_search_space_shown_is_accepted_by_a_dry_run(page, tmp_path):
    """Each YAML block is YAML; a search space (or a `tune:` block, inside a
    small space) passes `tune search --dry-run`; a Ray cluster file is Ray's."""
    shutil.copy(ROOT / "tune_pipeline" / "transforms" / "runtime_transform_basic.py",
                tmp_path / "my_transform.py")   # the page's "yours by path"
    for number, block in enumerate(blocks(page.read_text(), "yaml")):
        document = yaml.safe_load(block)
        assert isinstance(document, dict), block
        if "cluster_name" in document:
            continue  # Ray's cluster launcher file, untested here (no cloud)
        if "method" not in document:
            assert set(document) == {"tune"}, block
            document = {**FRAGMENT_BASE, **document}
        space = tmp_path / f"block{number}.yaml"
        space.write_text(yaml.safe_dump(document))
        result = CliRunner().invoke(app, ["search", str(space), "--dry-run"])
        assert result.exit_code == 0, f"{page.name}:\n{block}\n{result.output}"


@pytest.mark.parametrize("page", PAGES, ids=page_ids)
def test_every_python_block_compiles(page):
    for block in blocks(page.read_text(), "python"):
        compile(block, page.name, "exec")


def test_every_shipped_file_and_model_is_named():
    for path in SEARCH_SPACES + TRANSFORM_SCRIPTS:
        assert path.name in EVERY_PAGE
    for name in list_models():
        assert f"`{name}`" in EVERY_PAGE


def test_every_benchmark_cited_is_a_section_of_benchmarks():
    headings = re.findall(r"^#+ (.*)$", (ROOT / "BENCHMARKS.md").read_text(), flags=re.M)
    cited = re.findall(r'BENCHMARKS\.md\]\([^)]*\), "([^"]+)"', EVERY_PAGE)
    assert cited
    for title in cited:
        assert any(title in heading for heading in headings), f"BENCHMARKS.md has no section {title!r}"


def test_a_user_with_rays_tune_script_learns_what_to_do():
    """Whichever package installs last owns `tune`: README quotes what Ray's
    script answers to our commands, and names the entry point no one else takes."""
    import tomllib

    from click.testing import CliRunner as ClickRunner
    from ray.tune.cli.scripts import cli as rays_tune  # Ray's `tune` console script

    answer = ClickRunner().invoke(rays_tune, ["search", "quickstart"]).output.strip().splitlines()[-1]
    assert f"`{answer}`" in README  # Error: No such command 'search'.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tune-pipeline"] == scripts["tune"] == "tune_pipeline.cli:main"
    assert "`tune-pipeline`" in README


def test_ci_runs_the_readme_test_command():
    setup = re.findall(r"```bash\n(pip install .*)\n```", README)
    assert len(setup) >= 2 and setup[0].endswith("tune search quickstart")
    tests = re.fullmatch(r'pip install (torch\S+ torchvision\S+) && pip install -e "(\.\[[\w,]+\])" && (.*)',
                         setup[1])
    assert tests, setup[1]
    pins, extras, command = tests.groups()
    assert f"pip install --quiet {pins}" in CI and f'-e "{extras}"' in CI
    assert CI.strip().splitlines()[-1] == command
