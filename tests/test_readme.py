"""README.md stays true: every key, command, shipped file and the two set-up commands."""

import re

import pytest

from tune_pipeline.cli import app
from tune_pipeline.config import FIELDS
from tune_pipeline.models import list_models

from conftest import ROOT, SEARCH_SPACES, TRANSFORM_SCRIPTS

README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("key", FIELDS)
def test_every_training_key_is_documented_with_its_default(key):
    row = re.search(rf"^\| `{key}` \| `?([^|`]*)`? \|", README, flags=re.M)
    assert row, f"README's key table lacks {key}"
    default = FIELDS[key].default
    shown = row.group(1).strip()
    if isinstance(default, bool):
        assert shown == str(default).lower()
    elif isinstance(default, float):
        assert float(shown) == default
    else:
        assert shown == str(default)


def test_every_command_has_an_example():
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert re.search(rf"^tune {name}\b", README, flags=re.M), name


def test_every_shipped_file_and_model_is_named():
    for path in SEARCH_SPACES + TRANSFORM_SCRIPTS:
        assert path.name in README
    for name in list_models():
        assert f"`{name}`" in README


def test_a_user_with_rays_tune_script_learns_what_to_do():
    """Whichever package installs last owns `tune`: README quotes what Ray's
    script answers to our commands, and names the entry point no one else takes."""
    import tomllib

    from click.testing import CliRunner
    from ray.tune.cli.scripts import cli as rays_tune  # Ray's `tune` console script

    answer = CliRunner().invoke(rays_tune, ["search", "quickstart"]).output.strip().splitlines()[-1]
    assert f"`{answer}`" in README  # Error: No such command 'search'.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tune-pipeline"] == scripts["tune"] == "tune_pipeline.cli:main"
    assert "`tune-pipeline`" in README


def test_ci_runs_the_readme_test_command():
    setup = re.findall(r"```bash\n(pip install .*)\n```", README)
    assert len(setup) >= 2 and setup[0].endswith("tune search quickstart")
    assert setup[1].endswith("&& pytest")
    extras = re.search(r'pip install -e "(\.\[[\w,]+\])" && pytest', setup[1]).group(1)
    assert "torch==2.14.1 torchvision==0.29.1" in CI and f'-e "{extras}"' in CI and "pytest" in CI
