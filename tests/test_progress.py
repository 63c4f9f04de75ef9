"""The live table and the lines a sweep prints, without Ray running a sweep:
rendered from rows and from experiments written on disk."""

import io
import re

import pytest
from rich.console import Console

from tune_pipeline.experiment import load_experiment
from tune_pipeline.progress import Row, SweepConsole, header_line, render, rows_from_experiment

from fake_experiment import QUICKSTART_GRID, SCRIPTS, make_experiment

SWEPT = ["runtime_transform_script", "learning_rate", "weight_decay", "optimizer"]


def text_of(renderable, width=80, height=40) -> str:
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def rows(n, running=0):
    out = []
    for i in range(n):
        config = {"runtime_transform_script": SCRIPTS[i % 2], "learning_rate": [0.02, 0.1, 5.0e-4][i % 3],
                  "weight_decay": [5.0e-4, 1.0e-4][i // 2 % 2], "optimizer": ["sgd", "adamw"][i // 4 % 2],
                  "epochs": 30}
        state = "running" if i < running else "finished"
        out.append(Row(f"9f3e1_{i:05d}", state, config, 12 if state == "running" else 30, 0.5 + i / 1000,
                       0.6 + i / 1000))
    return out


@pytest.mark.parametrize("count", [4, 40])
def test_table_at_80_columns_tells_every_swept_value_apart(count):
    text = text_of(render(rows(count, running=2), SWEPT, "test_accuracy", "max", 80, 24,
                          header_line(rows(count, running=2), count, 65)))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert re.search(r"\bbasic\b", text) and re.search(r"\badvanced\b", text)
    assert "runtime_transf…" not in text and "…" not in text.replace("… ", "")
    for value in ["0.02", "0.1", "0.0005", "0.0001", "sgd"] + (["adamw"] if count > 4 else []):
        assert value in text, (value, text)
    assert "elapsed 1:05" in text and f"{count - 2}/{count} trials done" in text


def test_more_trials_than_rows_shows_the_running_and_the_best_then_how_many_more():
    many = rows(40, running=3)
    text = text_of(render(many, SWEPT, "test_accuracy", "max", 80, 20, "h"))
    shown_ids = set(re.findall(r"\b(000\d\d)\b", text))
    assert {"00000", "00001", "00002"} <= shown_ids  # running
    assert "00039" in shown_ids  # the best finished one
    hidden = 40 - len(shown_ids)
    assert hidden > 0 and f"… {hidden} more" in text
    assert len(text.splitlines()) <= 20


def test_header_has_an_eta_once_a_trial_is_done():
    none_done = rows(4, running=4)
    assert "ETA" not in header_line(none_done, 4, 30)
    assert "0/4 trials done" in header_line(none_done, 4, 30)
    some = rows(4, running=2)
    assert "2/4 trials done · ETA 0:30" in header_line(some, 4, 30)
    assert "6 pending" in header_line(some, 10, 30)  # not yet created by Ray


def test_final_summary_of_an_interrupted_sweep_says_interrupted(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={2: ("RUNNING", 1), 3: ("PENDING", 0)})
    experiment = load_experiment(path)
    out = io.StringIO()
    console = SweepConsole(console=Console(width=80, height=30, file=out, force_terminal=True, color_system=None))
    console.finish(experiment, experiment.best_trial(), True, 12)
    text = out.getvalue()
    assert "interrupted" in text and "running" not in text and "terminated" not in text.lower()
    assert "trials: 1 pending, 2 finished, 1 interrupted" in text
    assert re.search(r"interrupted\s+advanced\s+0\.02\s+1/3", text), text
    assert f"tune resume {path}" in text


def test_rows_from_disk_use_the_vocabulary(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={0: ("ERROR", 1), 1: ("TERMINATED", 1),
                                                                2: ("RUNNING", 2)}, live=True)
    states = [r.state for r in rows_from_experiment(load_experiment(path))]
    assert states == ["failed", "stopped early", "running", "finished"]


class FakeTrial:
    def __init__(self, index, status="RUNNING", epoch=1):
        self.trial_id = f"9f3e1_{index:05d}"
        self.config = {"runtime_transform_script": SCRIPTS[index % 2], "learning_rate": 0.1, "epochs": 3}
        self.status = status
        self.last_result = {"epoch": epoch, "test_accuracy": 0.5, "best_test_accuracy": 0.5}
        self.error_file = None
        self.path = None


def test_in_a_log_epoch_lines_are_rate_limited_per_trial_and_each_finish_is_a_line(monkeypatch):
    import tune_pipeline.progress as progress

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    table = progress.LiveTable(["runtime_transform_script", "learning_rate"], "test_accuracy", "max",
                               SweepConsole(stream=out, live=False), total=2)
    table.setup()
    trials = [FakeTrial(0), FakeTrial(1)]
    for epoch, seconds in ((1, 0), (2, 10), (3, 31)):
        clock[0] = 1000.0 + seconds
        for trial in trials:
            trial.last_result["epoch"] = epoch
            table.on_trial_result(0, trials, trial, trial.last_result)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # epochs 1 and 3 of each trial: epoch 2 came within 30 s
    assert all("epoch 1/3" in line or "epoch 3/3" in line for line in lines)
    assert "runtime_transform_script=basic" in lines[0] and "runtime_transform_script=advanced" in lines[1]
    trials[0].status = "TERMINATED"
    table.on_trial_complete(0, trials, trials[1])
    assert out.getvalue().splitlines()[-1].startswith("[2/2] 9f3e1_00001 finished at epoch 3")


def test_in_a_log_the_final_table_has_one_line_per_trial(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID)
    experiment = load_experiment(path)
    out = io.StringIO()
    SweepConsole(stream=out, live=False).finish(experiment, experiment.best_trial(), False, 14)
    rows = [line for line in out.getvalue().splitlines() if re.match(r"^0000\d\s+finished\s+(basic|advanced)\s", line)]
    assert len(rows) == 4, out.getvalue()
    assert all(len(line) <= 80 for line in out.getvalue().splitlines()[:5])
