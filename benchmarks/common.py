"""Shared by the benchmarks: where the CIFAR-10 JPEG folder is, and a timer."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The archive beside the checkout, or a copy in the git-ignored .data/ (which
# is what travels to a GPU machine: the unpacked folder is too big to carry).
ARCHIVES = [ROOT / ".data" / "cifar10-jpg.tar.gz", ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"]
DATA = ROOT / ".data" / "cifar10"


def cifar10_folder() -> Path:
    """The CIFAR-10 JPEG image folder, unpacked on first use."""
    if not (DATA / "train").is_dir():
        archive = next((a for a in ARCHIVES if a.exists()), None)
        if archive is None:
            raise SystemExit(f"need {DATA} or one of {', '.join(map(str, ARCHIVES))}")
        DATA.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(DATA.parent, filter="data")
    return DATA


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
