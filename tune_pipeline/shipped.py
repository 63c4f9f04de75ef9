"""What the package carries besides its code: the stock transform scripts and
the example search spaces, found through importlib.resources so an installed
package (a wheel, no checkout) has them too.

A stock script is named by its short name (`basic`, `advanced`): that name is
what a config and a trial record, so tables show it as it was written.  An
example space is named by its file stem (`quickstart`); `tune examples`
writes copies to edit.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SCRIPT_PREFIX = "runtime_transform_"  # stock script files: runtime_transform_<name>.py


def _folder(name: str):
    return importlib.resources.files("tune_pipeline") / name


def _names(folder: str, suffix: str, prefix: str = "") -> list[str]:
    return sorted(entry.name[len(prefix):-len(suffix)] for entry in _folder(folder).iterdir()
                  if entry.name.startswith(prefix) and entry.name.endswith(suffix))


def stock_scripts() -> list[str]:
    """The short names of the stock transform scripts: basic, advanced."""
    return _names("transforms", ".py", SCRIPT_PREFIX)


def is_stock_script(value) -> bool:
    return isinstance(value, str) and value in stock_scripts()


def stock_script_file(name: str):
    """The packaged file of a stock script (a Traversable; a Path for a normal install)."""
    return _folder("transforms") / f"{SCRIPT_PREFIX}{name}.py"


def example_spaces() -> list[str]:
    """The names of the shipped search spaces: quickstart, grid, ..."""
    return _names("search_spaces", ".yaml")


def example_space_file(name: str) -> Path | None:
    """The shipped space called `name` (with or without .yaml), or None."""
    stem = name[:-len(".yaml")] if name.endswith(".yaml") else name
    if stem not in example_spaces():
        return None
    return Path(str(_folder("search_spaces") / f"{stem}.yaml"))


def write_examples(folder: Path) -> list[Path]:
    """Copy the example spaces and the stock scripts into `folder`, side by
    side, to edit (never over an existing file).  The copied spaces name the
    copied scripts, so an edited script there is what its space runs."""
    written = []
    for name in stock_scripts():
        written += _write_new(folder / f"{SCRIPT_PREFIX}{name}.py", stock_script_file(name).read_text())
    for name in example_spaces():
        text = (_folder("search_spaces") / f"{name}.yaml").read_text()
        written += _write_new(folder / f"{name}.yaml", _name_copied_scripts(text))
    return written


def _name_copied_scripts(text: str) -> str:
    """`basic` -> `runtime_transform_basic.py` in the runtime_transform_script
    entry of a shipped space (the key's line and the value line under it)."""
    import re

    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.lstrip().startswith("runtime_transform_script:"):
            for j in (i, i + 1):
                for script in stock_scripts():
                    lines[j] = re.sub(rf"\b{re.escape(script)}\b", f"{SCRIPT_PREFIX}{script}.py", lines[j])
    return "".join(lines)


def _write_new(path: Path, text: str) -> list[Path]:
    if path.exists():
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [path]
