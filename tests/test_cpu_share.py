"""The loop's thread count on a CPU that other processes share (cpu_share.py):
decided from what others used of its cores, never above what it started
with, and back to that when the run ends.  The speeds are in BENCHMARKS.md."""

import subprocess
import sys
import time

import pytest
import torch

from tune_pipeline import cpu_share
from tune_pipeline.cpu_share import ThreadShare, restore_threads


class Clock:
    """What /proc would say at each look, 2 s after the last, others having used `others` cores."""

    def __init__(self, share: ThreadShare):
        self.share, self.t, self.busy, self.mine = share, 0.0, 0.0, 0.0
        share.every = 0.0  # look at every tick
        share.last = (0.0, 0.0, 0.0)
        share._sample = lambda: (self.t, self.busy, self.mine)

    def look(self, others: float, own: float = 2.0) -> int:
        self.t += 2.0
        self.busy += (others + own) * 2.0
        self.mine += own * 2.0
        self.share.tick()
        return torch.get_num_threads()


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(cpu_share.os, "sched_getaffinity", lambda pid: {0, 1})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    cpu_share._changed.clear()
    torch.set_num_threads(before)


def test_a_busy_core_takes_a_thread_and_gives_it_back(two_cores):
    share = ThreadShare()
    clock = Clock(share)
    assert share.enabled and share.ceiling == 2
    assert clock.look(others=0.05) == 2       # quiet: both cores
    assert clock.look(others=0.7) == 1        # one busy process squeezed by our two threads
    assert clock.look(others=1.0) == 1        # ...and with the core it got back
    assert clock.look(others=0.0, own=1.0) == 2  # it left
    assert clock.look(others=0.4) == 2        # a light load is not worth a thread
    assert [threads for threads, _ in share.changes] == [1, 2]


def test_never_more_threads_than_it_started_with(two_cores):
    torch.set_num_threads(1)  # a sweep's trial with cpu: 1
    share = ThreadShare()
    assert not share.enabled  # nothing to decide
    torch.set_num_threads(2)
    share = ThreadShare(ceiling=1)
    assert not share.enabled


def test_the_run_ends_with_the_count_it_started_with(two_cores):
    share = ThreadShare()
    clock = Clock(share)
    assert clock.look(others=1.0) == 1
    restore_threads()
    assert torch.get_num_threads() == 2
    restore_threads()  # nothing left to restore
    assert torch.get_num_threads() == 2


def test_one_core_or_no_proc_decides_nothing(monkeypatch):
    monkeypatch.setattr(cpu_share.os, "sched_getaffinity", lambda pid: {0})
    assert not ThreadShare(ceiling=2).enabled
    monkeypatch.setattr(cpu_share.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(cpu_share.os.path, "exists", lambda path: False)
    assert not ThreadShare(ceiling=2).enabled


def test_a_busy_process_is_seen_in_proc():
    """The real reading: a process spinning on one of our cores counts as
    most of a core used by others."""
    share = ThreadShare(ceiling=2, every=0.5)
    if not share.enabled:
        pytest.skip("needs Linux's /proc and two cores")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        share.last = share._sample()
        time.sleep(1.0)
        assert share.others() > 0.5
    finally:
        busy.kill()
        busy.wait()
