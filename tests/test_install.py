"""The package installed as a user installs it: a built wheel in a fresh
environment, no editable install, no checkout on the path, run from an empty
folder.  Everything it needs (the stock transform scripts, the example
spaces, the digits) comes from the package itself."""

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, install_wheel

pytestmark = pytest.mark.slow


def fresh_environment(folder: Path, wheel: Path) -> Path:
    """A virtual environment with the wheel installed.  torch, Ray and the
    other dependencies come from this interpreter's site-packages through a
    path file: unlike --system-site-packages, that runs none of their .pth
    files (an editable install of the checkout is one), so the checkout
    cannot be imported from it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    packages = next(folder.glob("lib/python*/site-packages"))
    (packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install_wheel(wheel, venv=folder)
    return folder / "bin"


def test_the_wheel_trains_and_sweeps_with_no_checkout(built_wheel, tmp_path):
    bin_ = fresh_environment(tmp_path / "venv", built_wheel)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout stays off the path

    where = subprocess.run([bin_ / "python", "-c", "import json, sys, tune_pipeline\n"
                            "print(json.dumps([tune_pipeline.__file__, sys.path, [repr(f) for f in sys.meta_path]]))"],
                           cwd=empty, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    package, path, finders = json.loads(where.stdout)
    assert Path(package).is_relative_to(tmp_path / "venv")
    assert not any(Path(entry).is_absolute() and Path(entry).resolve().is_relative_to(ROOT) for entry in path)
    assert not any("editable" in finder.lower() for finder in finders)  # no editable install's finder

    def tune(*args, script="tune"):
        return subprocess.run([bin_ / script, *map(str, args)], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=600)

    (empty / "two.yaml").write_text(yaml.safe_dump({"dataset": "digits", "epochs": 1}))
    trained = tune("train", "two.yaml")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "done: 1 epochs" in trained.stdout
    saved = yaml.safe_load((empty / "output" / "two" / "config.yaml").read_text())
    assert saved["runtime_transform_script"] == "basic"  # the packaged script, by name

    swept = tune("search", "quickstart", "--name", "qs", "--set", "epochs=1", *TINY, script="tune-pipeline")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "trials: 4 finished" in swept.stdout
    assert sorted(p.name for p in empty.iterdir()) == ["output", "ray_results", "two.yaml"]

    copied = tune("examples", "mine")
    assert copied.returncode == 0 and (empty / "mine" / "quickstart.yaml").is_file()
    assert (empty / "mine" / "runtime_transform_advanced.py").is_file()
