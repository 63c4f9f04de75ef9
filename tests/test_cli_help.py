"""`tune COMMAND --help` reads like a command line's help at 80 columns:
flags without a type, choices listed, each option's help on one or two lines."""

import re

import pytest
from typer.testing import CliRunner

from tune_pipeline.cli import app

COMMANDS = ["search", "resume", "export", "status", "plot", "report", "train", "dashboard", "models"]


def help_of(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def option_entries(text: str) -> list[list[str]]:
    """The Options section, one list of lines per option."""
    lines = text.split("Options:\n", 1)[1].splitlines()
    entries: list[list[str]] = []
    for line in lines:
        if re.match(r"^  -", line):
            entries.append([line])
        elif line.startswith("    ") and entries:
            entries[-1].append(line)
    return entries


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_with_one_or_two_lines_per_option(command):
    text = help_of(command)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert not re.search(r"<(bool|str|list\[str\]|int|float)[^>]*>", text.split("Options:", 1)[1]), text
    entries = option_entries(text)
    assert entries and all(len(entry) <= 2 for entry in entries), text


def test_choices_and_values_are_named():
    search = help_of("search")
    for shown in ("--scheduler [asha|fifo]", "--dry-run ", "--wandb / --no-wandb", "--set KEY=VALUE",
                  "--cpus-per-trial N", "--name NAME"):
        assert shown in search, shown
    assert "--format [md|csv|parquet|json]" in help_of("export")
    assert "--wide" in help_of("status")
