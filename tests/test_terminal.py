"""A sweep as a person sees it on an 80-column terminal: a real
pseudo-terminal (`script`), the live table, and nothing of Ray's."""

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import TINY, write_sweep

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_live_table_in_a_real_terminal_tells_the_scripts_apart_and_hides_ray(tmp_path):
    if not shutil.which("script"):
        pytest.skip("util-linux `script` is not installed")
    scripts = ["basic", "advanced"]
    space = write_sweep(tmp_path, {"runtime_transform_script": {"values": scripts},
                                   "learning_rate": {"values": [0.05, 1.0e12]},  # the second diverges
                                   "lr_scheduler": {"value": "none"}, "epochs": {"value": 2}})
    command = " ".join(shlex.quote(str(a)) for a in [
        sys.executable, "-m", "tune_pipeline", "search", space, "--name", "pty", "--storage-path", tmp_path, *TINY])
    done = subprocess.run(["script", "-qfec", f"stty cols 80 rows 24; {command}", "/dev/null"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    screen = ANSI.sub("", done.stdout).replace("\r", "")
    assert done.returncode != 0 and "exit" not in screen.splitlines()[-1:], screen  # two trials failed
    assert "Traceback" not in screen and "core_worker" not in screen and "raylet" not in screen, screen
    assert re.search(r"\bbasic\b", screen) and re.search(r"\badvanced\b", screen)
    assert "runtime_transf…" not in screen
    failed = [line for line in screen.splitlines() if line.startswith("failed ")]
    assert failed and all("diverged" in line and "error.txt" in line for line in failed), screen
    assert all(len(line) <= 80 for line in screen.splitlines() if not line.startswith(("failed ", "best trial", "  ", "experiment", "sweep", "interrupted"))), screen
    assert "elapsed" in screen and "trials done" in screen
    assert (tmp_path / "pty" / "tune.log").exists()  # where Ray's lines went
