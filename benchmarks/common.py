"""Shared by the benchmarks: where the CIFAR-10 JPEG folder is, and a timer."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
DATA = ROOT / ".data" / "cifar10"


def cifar10_folder() -> Path:
    """The image folder, unpacked from ../shared/data on first use."""
    if not (DATA / "train").is_dir():
        if not ARCHIVE.exists():
            raise SystemExit(f"need {DATA} or {ARCHIVE}")
        DATA.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(DATA.parent, filter="data")
    return DATA


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
