"""Transform scripts travel as text: stock ones by name from the package, a
sweep's read once by its driver and recorded, a resumed sweep runs the
recorded text whatever the files hold now.  (The worker that has none of the
driver's files: tests/test_cluster.py.)"""

import traceback

import pytest
import torch

from tune_pipeline.augment import (ScriptSource, TransformContext, TransformScriptError, load_transform_script,
                                   read_transform_script)
from tune_pipeline.shipped import stock_script_file, stock_scripts
from tune_pipeline.space import load_space
from tune_pipeline.experiment_record import ExperimentRecord
from tune_pipeline.trial_inputs import read_scripts, recorded_scripts

from conftest import TRANSFORM_SCRIPTS, write_sweep


class Notes:
    def __init__(self):
        self.lines = []

    def note(self, message):
        self.lines.append(message)


def test_every_stock_script_is_shipped_and_loads_by_name():
    assert stock_scripts() == ["advanced", "basic"]
    assert sorted(f"runtime_transform_{n}.py" for n in stock_scripts()) == [p.name for p in TRANSFORM_SCRIPTS]
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    ctx = TransformContext(torch.full((3,), 0.5), torch.full((3,), 0.25), torch.Generator().manual_seed(0))
    for name in stock_scripts():
        source = read_transform_script(name)
        assert source.name == name and source.text == stock_script_file(name).read_text()
        assert load_transform_script(name).train_transform(batch, ctx).dtype == torch.float32


def test_a_script_runs_from_its_text_where_its_file_does_not_exist(tmp_path):
    gone = tmp_path / "gone.py"
    text = ("def train_transform(images, ctx):\n    raise ValueError('from the recorded text')\n\n"
            "def test_transform(images, ctx):\n    return images\n")
    loaded = load_transform_script(str(gone), source=ScriptSource(str(gone), str(gone), text))
    with pytest.raises(ValueError) as raised:
        loaded.train_transform(None, None)
    shown = "".join(traceback.format_exception(raised.value))
    assert f'File "{gone}", line 2' in shown and "raise ValueError('from the recorded text')" in shown
    with pytest.raises(TransformScriptError, match="does not exist"):
        load_transform_script(str(gone))  # by name, the file is what counts


def test_the_driver_reads_each_script_once_and_a_resume_runs_the_recorded_text(tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text(TRANSFORM_SCRIPTS[-1].read_text())
    space = load_space(write_sweep(tmp_path, {"runtime_transform_script": {"values": ["basic", "mine.py"]}}))
    scripts = read_scripts(space)
    assert list(scripts) == ["basic", str(mine)]
    assert scripts[str(mine)]["source"] == mine.read_text()
    assert scripts[str(mine)]["sha256"] == ScriptSource(str(mine), str(mine), mine.read_text()).sha256
    meta = ExperimentRecord(transform_scripts=scripts)

    notes = Notes()
    assert recorded_scripts(meta, space, notes) == scripts and notes.lines == []
    mine.write_text(mine.read_text() + "\n# edited after the sweep started\n")
    assert recorded_scripts(meta, space, notes) == scripts  # the recorded text, not the edit
    assert len(notes.lines) == 1 and str(mine) in notes.lines[0] and "changed" in notes.lines[0]
    mine.unlink()
    assert recorded_scripts(meta, space, Notes()) == scripts  # moved or gone: nothing to say


def test_a_sweep_over_datasets_with_different_defaults_says_which_it_uses(tmp_path):
    space = load_space(write_sweep(tmp_path, {"dataset": {"values": ["digits", "cifar10"]}}))
    assert (space.fixed["batch_size"], space.fixed["learning_rate"]) == (256, 0.2)
    assert any("dataset is swept" in n and "batch_size" in n for n in space.notes)
    digits = load_space(write_sweep(tmp_path, {}))  # one dataset: its own defaults
    assert (digits.fixed["batch_size"], digits.fixed["learning_rate"]) == (64, 0.05)
