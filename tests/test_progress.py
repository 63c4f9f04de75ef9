"""What a sweep shows (the table of trials, progress.py; the live table,
live_table.py; the start-up steps and the end, sweep_console.py), without Ray running a sweep:
rendered from rows, from Ray-like trial objects fed through the callback's
hooks, and from experiments written on disk."""

import fcntl
import io
import math
import os
import random
import re
import struct
import termios
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tune_pipeline.cli import app
from tune_pipeline.experiment import Experiment, Trial, load_experiment
from tune_pipeline.experiment_record import ExperimentRecord
from tune_pipeline.labels import labellers
from tune_pipeline.live_table import LiveTable
from tune_pipeline.progress import (SHORT_STATES, WIDE_COMMAND, Row, order_rows, render, render_experiment,
                                    rows_from_experiment)
from tune_pipeline.sweep_console import SweepConsole

from fake_experiment import QUICKSTART_GRID, SCRIPTS, make_experiment

# asha.yaml's six kinds of swept values (and a seventh, as it has)
SWEPT = ["model", "runtime_transform_script", "optimizer", "learning_rate", "momentum", "weight_decay",
         "label_smoothing"]
CORE_TITLES = ["trial", "state", "epoch", "val_acc", "best"]


def text_of(renderable, width=80, height=30) -> str:
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def asha_config(rng, index=0) -> dict:
    return {"model": rng.choice(["resnet18", "preact_resnet18", "vgg16"]), "runtime_transform_script": SCRIPTS[index % 2],
            "optimizer": rng.choice(["sgd", "adamw"]), "learning_rate": 10 ** rng.uniform(-4, -0.7),
            "momentum": rng.uniform(0.8, 0.99), "weight_decay": 10 ** rng.uniform(-5, -2),
            "label_smoothing": rng.choice([0.0, 0.1]), "epochs": 30}


def asha_rows(count, running=2, seed=0) -> list[Row]:
    rng = random.Random(seed)
    states = ["running"] * running + ["finished", "stopped early", "failed", "pending"] * count
    return [Row(f"9f3e1_{i:05d}", states[i], asha_config(rng, i), 0 if states[i] == "pending" else 3 + i % 27,
                None if states[i] == "pending" else 0.5 + i / 1e4, None if states[i] == "pending" else 0.6 + i / 1e4)
            for i in range(count)]


def table_lines(text: str) -> tuple[list[str], list[list[str]]]:
    """The title line (the one naming `trial`) and the rows under it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    rows = []
    for line in lines[start + 1:]:
        if not re.match(r"^\d{5} ", line):
            break
        rows.append(line.split())
    return lines[start], rows


@pytest.mark.parametrize("width", [80, 60, 40])
@pytest.mark.parametrize("count", [3, 40])
def test_the_core_columns_show_at_every_width_and_every_value_is_a_whole_label(width, count):
    rows = order_rows(asha_rows(count), "max")
    text = text_of(render(rows, SWEPT, "val_accuracy", width, 30, header=["h"]), width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), text
    title, body = table_lines(text)
    assert [t for t in title.split() if t in CORE_TITLES] == CORE_TITLES, title
    assert body and all(cells[1] in SHORT_STATES.values() for cells in body), text
    shown = rows[:len(body)]
    by = labellers((r.config for r in shown), SWEPT)
    for cells, row in zip(body, shown):  # each row's cells: whole labels of its own values
        assert cells[0] == row.trial_id.split("_")[1]
        labels = {by[k](row.config[k]) for k in SWEPT}
        swept_cells = cells[2:-3]
        assert set(swept_cells) <= labels, (swept_cells, labels)
    hidden = [line for line in lines if "hidden" in line]
    shown_titles = len([k for k in SWEPT if k.split("_")[0] in text])
    if shown_titles < len(SWEPT):
        assert hidden and WIDE_COMMAND in text, text
    if width == 80 and count == 3:  # three rows are told apart by the columns shown
        assert len({tuple(cells[2:-3]) for cells in body}) == len(body)
    if count > 20:
        assert re.search(r"… \d+ more \(", text)


@pytest.mark.parametrize("width,wide", [(80, False), (60, False), (40, False), (300, True)])
def test_a_listing_of_every_row_is_rich_s_table_without_rich_laying_out_each_cell(monkeypatch, width, wide):
    """`tune status` to a file lists every trial: 5,000 rows through rich's
    per-cell layout took 2.4 s (BENCHMARKS.md).  The same lines, as plain text."""
    rows = order_rows(asha_rows(40), "max")
    laid_out = text_of(render(rows, SWEPT, "val_accuracy", width, len(rows) + 20, header=["h"], wide=wide), width)
    cells = []
    monkeypatch.setattr("rich.table.Table.add_row", lambda self, *row, **kw: cells.append(row))
    listed = text_of(render(rows, SWEPT, "val_accuracy", width, None, header=["h"], wide=wide), width)
    assert cells == []
    assert listed == laid_out
    assert len(table_lines(listed)[1]) == len(rows)


def test_labels_tell_the_shown_rows_apart_in_few_digits():
    rows = [Row(f"a_{i:05d}", "finished", {"learning_rate": lr, "epochs": 3}, 3, 0.5, 0.5)
            for i, lr in enumerate([0.0195123, 0.0201877, 0.05, 5.1234e-5])]
    text = text_of(render(rows, ["learning_rate"], "val_accuracy", 80, 30))
    for label in ("0.0195", "0.0202", "0.05", "5.12e-5"):
        assert re.search(rf"\s{re.escape(label)}\s", text), text
    assert "…" not in text


class CountingTrial:
    """A Ray trial whose every attribute read is counted: the driver's work."""
    reads = 0

    def __init__(self, index, config):
        self.trial_id = f"9f3e1_{index:05d}"
        self.config = config
        self.status = "PENDING"
        self.last_result = {}
        self.error_file = None
        self.path = None

    def __getattribute__(self, name):
        if not name.startswith("__"):
            CountingTrial.reads += 1
        return object.__getattribute__(self, name)


class CountingList(list):
    """Ray's list of trials, whose every element visited is counted as a read:
    walking past the old trials is work too."""

    def __iter__(self):
        for item in super().__iter__():
            CountingTrial.reads += 1
            yield item

    def __getitem__(self, index):
        got = super().__getitem__(index)
        CountingTrial.reads += len(got) if isinstance(index, slice) else 1
        return got


def _work_per_window(count: int, live: bool) -> tuple[int, int]:
    """Trial attributes read and values labelled while 10 trials are made,
    report 3 epochs and finish, with a refresh after each epoch, once
    `count` trials exist and all but 10 of them are done."""
    rng = random.Random(count)
    trials = CountingList(CountingTrial(i, asha_config(rng, i)) for i in range(count))
    out = io.StringIO()
    table = LiveTable(SWEPT, "val_accuracy", "max", SweepConsole(stream=out, live=False), total=count + 10)
    table.setup()
    table.on_step_end(0, trials)
    for trial in trials[:-10]:
        trial.status = "TERMINATED"
        trial.last_result = {"epoch": 30, "val_accuracy": rng.random()}
        table.on_trial_complete(0, trials, trial)
    CountingTrial.reads = 0
    labelled = sum(labeller.relabelled for labeller in table._by.values())
    for i in range(10):  # made now: values that collide with no label of the others
        trials.append(CountingTrial(count + i, {**asha_config(rng, i), "learning_rate": 0.5 + i / 100,
                                                "momentum": 0.995 - i / 1000, "weight_decay": 0.5 + i / 100}))
    for trial in trials[-20:]:
        trial.status = "RUNNING"
        table.on_trial_start(0, trials, trial)
        for epoch in (1, 2, 3):
            trial.last_result = {"epoch": epoch, "val_accuracy": 0.1 * epoch, "best_val_accuracy": 0.1 * epoch}
            table.on_trial_result(0, trials, trial, trial.last_result)
            if live:
                text_of(table.renderable(trials))
            else:
                table._last = 0.0  # a refresh is due
                table.on_step_end(0, trials)
        trial.status = "TERMINATED"
        table.on_trial_complete(0, trials, trial)
    return CountingTrial.reads, sum(labeller.relabelled for labeller in table._by.values()) - labelled


@pytest.mark.parametrize("live", [False, True], ids=["log", "table"])
def test_the_live_table_does_the_same_work_per_event_at_50_and_5000_trials(live):
    """Labels recomputed over every trial at each event cost 71-82 ms
    at 5,000 trials.  Counted, not timed: the same events read the same trial
    attributes and label the same values whatever the number of trials."""
    small, large = _work_per_window(50, live), _work_per_window(5000, live)
    assert small[0] > 0 and small == large, (small, large)
    assert small[1] == 10 * 3  # the new trials' three continuous values, each labelled once


def _advance(clock, until, sample):
    """The fake clock to `until`, a second at a time, sampling at each."""
    while clock[0] + 1 <= until + 1e-9:
        clock[0] += 1
        sample(clock[0])


@pytest.mark.parametrize("count", [3, 4, 5])
def test_eta_counts_down_from_trial_epochs_left_and_trials_at_once(monkeypatch, count):
    """`count` trials of 3 epochs, 2 at a time; a trial's first epoch takes
    20 s (its worker starting), the others 10 s: the sweep ends at 80 s for 3
    or 4 trials (the third and fourth start at 40 s), at 120 s for 5."""
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    trials = [CountingTrial(i, {"learning_rate": 0.1 * (i + 1), "epochs": 3}) for i in range(count)]
    table = LiveTable(["learning_rate"], "val_accuracy", "max", SweepConsole(stream=io.StringIO(), live=False),
                      total=count)
    table.setup()
    etas = {}

    def sample(now):
        etas[round(now)] = table.eta(now)

    events = []  # (time, kind, trial index, epoch)
    for pair, start in ((0, 0.0), (1, 40.0), (2, 80.0)):
        for t in [i for i in (2 * pair, 2 * pair + 1) if i < count]:
            events += [(start, "start", t, 0), (start + 20, "result", t, 1), (start + 30, "result", t, 2),
                       (start + 40, "result", t, 3), (start + 40, "complete", t, 3)]
    for when, kind, index, epoch in sorted(events, key=lambda e: (e[0], ["result", "complete", "start"].index(e[1]))):
        _advance(clock, when, sample)
        trial = trials[index]
        if kind == "start":
            trial.status = "RUNNING"
            table.on_trial_start(0, trials, trial)
        elif kind == "result":
            trial.last_result = {"epoch": epoch, "val_accuracy": 0.1 * epoch}
            table.on_trial_result(0, trials, trial, trial.last_result)
        else:
            trial.status = "TERMINATED"
            table.on_trial_complete(0, trials, trial)
        sample(when)
    assert etas[10] is None  # before the first epoch: no guess
    end = 120 if count == 5 else 80
    steady = {t: eta for t, eta in etas.items() if t >= 30}
    for t, eta in steady.items():
        assert math.isclose(eta, end - t, abs_tol=1.0), (t, eta)
    times = sorted(steady)
    assert all(steady[b] <= steady[a] + 1e-9 for a, b in zip(times, times[1:]))  # counts down, never up


def test_the_header_says_what_the_first_wait_is(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    trials = [CountingTrial(i, {"learning_rate": 0.1, "epochs": 3}) for i in range(2)]
    table = LiveTable(["learning_rate"], "val_accuracy", "max", SweepConsole(stream=io.StringIO(), live=False),
                      total=2)
    table.setup()
    table._take_new(trials)
    assert "first trials starting" in table.header(2, 80)[0]
    trials[0].status = "RUNNING"
    table.on_trial_start(0, trials, trials[0])
    assert "ETA after the first epoch" in table.header(3, 80)[0]
    assert table.header(3, 80)[1] == "1 pending (wait), 1 running (run)"


def test_a_resumed_trial_keeps_its_best_before_its_next_epoch():
    trial = CountingTrial(0, {"learning_rate": 0.1, "epochs": 5})
    trial.status = "PENDING"  # restored, waiting to continue from epoch 3
    trial.last_result = {"epoch": 3, "val_accuracy": 0.61, "best_val_accuracy": 0.83}
    done = CountingTrial(1, {"learning_rate": 0.2, "epochs": 5})
    done.status = "TERMINATED"
    done.last_result = {"epoch": 5, "val_accuracy": 0.7, "best_val_accuracy": 0.75}
    console = Console(width=80, height=30, file=io.StringIO(), color_system=None)
    table = LiveTable(["learning_rate"], "val_accuracy", "max", SweepConsole(console=console, live=False), total=2)
    table.setup()
    text = text_of(table.renderable([trial, done]))
    assert re.search(r"00000\s+wait\s+0\.1\s+3/5\s+61\.00%\s+83\.00%", text), text
    assert re.search(r"00001\s+done\s+0\.2\s+5/5\s+70\.00%\s+75\.00%", text), text


def test_in_a_log_epoch_lines_are_rate_limited_per_trial_and_each_finish_is_a_line(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    table = LiveTable(["runtime_transform_script", "learning_rate"], "test_accuracy", "max",
                      SweepConsole(stream=out, live=False), total=2)
    table.setup()
    trials = [CountingTrial(i, {"runtime_transform_script": SCRIPTS[i % 2], "learning_rate": 0.1, "epochs": 3})
              for i in range(2)]
    for epoch, seconds in ((1, 0), (2, 10), (3, 31)):
        clock[0] = 1000.0 + seconds
        for trial in trials:
            trial.last_result = {"epoch": epoch, "test_accuracy": 0.5, "best_test_accuracy": 0.5}
            table.on_trial_result(0, trials, trial, trial.last_result)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # epochs 1 and 3 of each trial: epoch 2 came within 30 s
    assert all("epoch 1/3" in line or "epoch 3/3" in line for line in lines)
    assert "runtime_transform_script=basic" in lines[0] and "runtime_transform_script=advanced" in lines[1]
    trials[0].status = "TERMINATED"
    table.on_trial_complete(0, trials, trials[0])
    trials[1].status = "TERMINATED"
    table.on_trial_complete(0, trials, trials[1])
    assert out.getvalue().splitlines()[-1].startswith("[2/2] 9f3e1_00001 finished at epoch 3")


def _terminal(columns: int):
    """A pseudo-terminal `columns` wide, as a text stream."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    return os.fdopen(follower, "w"), leader


@pytest.mark.parametrize("term,columns,table", [("xterm-256color", 80, True), ("xterm-256color", 40, True),
                                                ("xterm-256color", 39, False), ("dumb", 80, False)])
def test_a_table_needs_a_terminal_that_moves_its_cursor_and_40_columns(monkeypatch, term, columns, table):
    monkeypatch.setenv("TERM", term)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    stream, leader = _terminal(columns)
    try:
        assert SweepConsole(stream=stream).live is table
    finally:
        stream.close()
        os.close(leader)
    assert SweepConsole(stream=io.StringIO()).live is False  # a log


def test_a_start_up_step_says_what_it_does_once_it_takes_time():
    out = io.StringIO()
    console = SweepConsole(stream=out, live=False)
    with console.phase("decoding cifar10", seconds=5):
        pass  # quick: nothing said
    assert out.getvalue() == ""
    with console.phase("decoding cifar10", seconds=0.05) as step:
        time.sleep(0.3)
        step.detail = "60,000 images"
    lines = out.getvalue().splitlines()
    assert lines[0] == "decoding cifar10…" and re.match(r"^  60,000 images in 0\.\d s$", lines[1]), lines


def _history(values):
    return [{"epoch": e, "val_accuracy": v, "test_accuracy": v - 0.05, "best_val_accuracy": max(values[:e])}
            for e, v in enumerate(values, 1)]


def test_the_best_epoch_is_named_where_the_metric_was_best(tmp_path):
    trials = [Trial("ab12c_00000", "TERMINATED", {"learning_rate": 0.1, "epochs": 5}, tmp_path,
                    _history([0.5, 0.9, 0.986, 0.97, 0.96])),
              Trial("ab12c_00001", "TERMINATED", {"learning_rate": 0.2, "epochs": 5}, tmp_path,
                    _history([0.4, 0.5, 0.6, 0.7, 0.8]))]
    experiment = Experiment(tmp_path, ExperimentRecord(metric="val_accuracy", mode="max", swept=["learning_rate"]),
                            trials)
    experiment.live = False
    out = io.StringIO()
    SweepConsole(stream=out, live=False).finish(experiment, experiment.best_trial(), False, 10)
    text = out.getvalue()
    assert "best trial ab12c_00000: val_accuracy 98.60% at epoch 3" in text, text
    assert "test_accuracy_at_best 93.60%" in text  # epoch 3's, beside it


def test_final_summary_of_an_interrupted_sweep_says_interrupted(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={2: ("RUNNING", 1), 3: ("PENDING", 0)})
    experiment = load_experiment(path)
    out = io.StringIO()
    console = SweepConsole(console=Console(width=80, height=30, file=out, force_terminal=True, color_system=None))
    console.finish(experiment, experiment.best_trial(), True, 12)
    text = out.getvalue()
    assert "running" not in text and "terminated" not in text.lower()
    assert "trials: 1 pending (wait), 2 finished (done), 1 interrupted (int)" in text
    assert re.search(r"00002\s+int\s+advanced\s+0\.02\s+1/3", text), text
    assert f"tune resume {path}" in text


def test_rows_from_disk_use_the_vocabulary(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={0: ("ERROR", 1), 1: ("TERMINATED", 1),
                                                                2: ("RUNNING", 2)}, live=True)
    states = [r.state for r in rows_from_experiment(load_experiment(path))]
    assert states == ["failed", "stopped early", "running", "finished"]


@pytest.mark.parametrize("width", [80, 40])
def test_the_final_table_is_tune_status_table(tmp_path, monkeypatch, width):
    path = make_experiment(tmp_path, QUICKSTART_GRID, statuses={1: ("TERMINATED", 1), 3: ("ERROR", 2)})
    experiment = load_experiment(path)
    out = io.StringIO()
    SweepConsole(console=Console(width=width, height=30, file=out, color_system=None), live=False).finish(
        experiment, experiment.best_trial(), False, 14)
    monkeypatch.setenv("COLUMNS", str(width))
    status = CliRunner().invoke(app, ["status", str(path)])
    assert status.exit_code == 0, status.output

    def table(text):
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("trial "))
        return lines[start:start + 1 + len(experiment.trials)]

    assert table(out.getvalue()) == table(status.output)
    assert [line.split()[0] for line in table(status.output)[1:]] == ["00003", "00002", "00001", "00000"]
    wide = CliRunner().invoke(app, ["status", "--wide", str(path)])
    title = table(wide.output)[0]
    assert "runtime_transform_script" in title and "learning_rate" in title and "hidden" not in wide.output


def test_in_a_log_the_final_table_has_one_line_per_trial(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID)
    experiment = load_experiment(path)
    out = io.StringIO()
    SweepConsole(stream=out, live=False).finish(experiment, experiment.best_trial(), False, 14)
    rows = [line for line in out.getvalue().splitlines() if re.match(r"^0000\d\s+done\s+(basic|advanced)\s", line)]
    assert len(rows) == 4, out.getvalue()
    assert all(len(line) <= 80 for line in out.getvalue().splitlines()[:7])


def test_render_experiment_labels_among_the_rows_it_shows(tmp_path):
    path = make_experiment(tmp_path, QUICKSTART_GRID)
    text = text_of(render_experiment(load_experiment(path), 80))
    assert re.search(r"\bbasic\b", text) and re.search(r"\badvanced\b", text) and "runtime_transform_b" not in text
