"""The watchdog: armed from the first batch, a
first epoch is measured against a bound; `trial_timeout` ends a run in every
case, also when code swallows the exception that stops it or sits in one C
call.  In-process, without Ray: the Ray side is in test_resume.py."""

from __future__ import annotations

import threading
import time

import pytest

from tune_pipeline.train import fit
from tune_pipeline.watchdog import TrialStalled, Watchdog, epoch_seconds

from conftest import digits_config, wait_until

FAST = dict(stall_factor=3, min_stall_s=0.2, startup_s=0.6, grace_s=1.0)


def hang():
    while True:
        time.sleep(0.01)


def batches(dog, n, seconds=0.02, steps=100):
    for step in range(1, n + 1):
        time.sleep(seconds)
        dog.batch_done(step, steps)


# (case, watchdog keywords, what the run does before it hangs, the reason's words).
# Each hangs in its first epoch: before the change the watchdog armed only once an
# epoch had finished in the process, and these ran forever.
FIRST_EPOCH_HANGS = [
    ("before the first batch", {}, lambda dog: None, "the limit before a first epoch's pace is known"),
    ("after one batch", {}, lambda dog: batches(dog, 1), "the limit before a first epoch's pace is known"),
    ("mid first epoch", {}, lambda dog: batches(dog, 5, steps=3), "the first epoch's 0.1 s expected"),
    ("first epoch of a resumed run", {"earlier_epochs": [0.1, 0.05]},
     lambda dog: batches(dog, 1), "the slowest earlier epoch, 0.1 s"),
    ("after an epoch", {}, lambda dog: (batches(dog, 3, steps=3), dog.beat()), "the slowest epoch"),
]


@pytest.mark.parametrize("case, keywords, before, words", FIRST_EPOCH_HANGS, ids=[c[0] for c in FIRST_EPOCH_HANGS])
def test_a_hang_in_a_first_epoch_is_a_stall(case, keywords, before, words):
    dog = Watchdog(0, **{**FAST, **keywords})
    with pytest.raises(TrialStalled, match="stalled: no progress") as stalled:
        dog.run(lambda: (before(dog), hang()))
    assert words in str(stalled.value)


def test_a_steady_first_epoch_is_not_a_stall():
    dog = Watchdog(0, **FAST)
    assert dog.run(lambda: (batches(dog, 40, seconds=0.02, steps=40), dog.beat(), "done")[-1]) == "done"
    assert dog.reason is None


def test_a_resumed_run_brings_its_epoch_times():
    state = {"history": [{"epoch_seconds": 2.0, "val_seconds": 0.5}, {"epoch_seconds": 3.0}]}
    assert epoch_seconds(state) == [2.5, 3.0] and epoch_seconds(None) == []


def test_the_run_s_own_exception_and_value_reach_the_caller():
    with pytest.raises(ZeroDivisionError):
        Watchdog(5).run(lambda: 1 / 0)
    assert Watchdog(5).run(lambda: 42) == 42


# What stands between a time limit and the end of a run, as data: code that
# swallows the exception that stops it (torch's lazy `import triton` did, about
# one run in ten), hooks that catch broadly, and a C call that never sees it.
def _swallowing_batch_hook(step, steps):
    try:
        time.sleep(0.005)
    except BaseException:  # noqa: B036 - the point: code that swallows everything
        pass


def _swallowing_epoch_hook(metrics, make_state):
    try:
        make_state()
        time.sleep(0.01)
    except BaseException:  # noqa: B036
        pass


def _stuck_in_c(step, steps):
    if step == 2:
        time.sleep(1.5)  # one C call: no bytecode runs until it returns


OBSTACLES = [
    ("plain", {}),
    ("a batch hook that swallows", {"on_batch": _swallowing_batch_hook}),
    ("an epoch hook that swallows", {"on_epoch": _swallowing_epoch_hook}),
    ("both swallow", {"on_batch": _swallowing_batch_hook, "on_epoch": _swallowing_epoch_hook}),
    ("stuck in one C call", {"on_batch": _stuck_in_c}),
]


@pytest.mark.slow
def test_trial_timeout_ends_the_run_every_time(digits):
    """25 runs, the limit landing at a different point of each (model build,
    first batch, mid-epoch, evaluation, checkpoint), five over each obstacle."""
    config = digits_config(128, 64, epochs=10_000, batch_size=32)
    outcomes = []
    for run in range(25):
        name, hooks = OBSTACLES[run % len(OBSTACLES)]
        timeout = 0.03 + 0.024 * run  # 0.03 to 0.61 s
        dog = Watchdog(timeout, grace_s=0.5)
        on_batch, on_epoch = hooks.get("on_batch"), hooks.get("on_epoch")

        def batch(step, steps, on_batch=on_batch, dog=dog):
            dog.batch_done(step, steps)
            if on_batch is not None:
                on_batch(step, steps)

        def epoch(metrics, make_state, on_epoch=on_epoch, dog=dog):
            if on_epoch is not None:
                on_epoch(metrics, make_state)
            dog.beat()

        try:
            dog.run(lambda: fit({**config, "trial_timeout": timeout}, dataset=digits,
                                on_batch=batch, on_epoch=epoch))
            outcomes.append((name, timeout, "finished"))
        except TrialStalled as exc:
            outcomes.append((name, timeout, "stopped" if "trial_timeout" in str(exc) else str(exc)))
    assert [o for o in outcomes if o[2] != "stopped"] == []
    # The runs themselves end too (an abandoned one as soon as its C call returns).
    wait_until(lambda: not any(t.name == "tune-run" for t in threading.enumerate()), 30, "the runs to end")
