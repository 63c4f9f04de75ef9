"""Shared fixtures: tiny datasets made on the spot, in the formats users have."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the package ships (tune_pipeline/shipped.py): every one is loaded by a test.
TRANSFORM_SCRIPTS = sorted((ROOT / "tune_pipeline" / "transforms").glob("*.py"))
SEARCH_SPACES = sorted((ROOT / "tune_pipeline" / "search_spaces").glob("*.yaml"))


# The user's own HOME, before the suite replaces it (pytest_configure).  A
# pytest-xdist worker starts with the HOME its controller made; the real one
# reaches it through the environment.
REAL_HOME_VARIABLE = "TUNE_SUITE_REAL_HOME"
REAL_HOME = Path(os.environ.get(REAL_HOME_VARIABLE) or Path.home())


def pytest_configure(config):
    """Every test, and every process a test starts (Ray's included), runs
    under a temporary HOME: a new local Ray or `ray start` writes
    ~/.ray/auth_token, which turns on token authentication for everything Ray
    that user does afterwards, and our caches live under ~/.cache.  Each
    xdist worker gets its own."""
    import tempfile

    os.environ.setdefault(REAL_HOME_VARIABLE, str(REAL_HOME))
    os.environ["HOME"] = tempfile.mkdtemp(prefix="tune-suite-home-")


def pytest_unconfigure(config):
    import shutil

    suite_home = os.environ.get("HOME", "")
    if Path(suite_home).name.startswith("tune-suite-home-"):
        os.environ["HOME"] = str(REAL_HOME)
        shutil.rmtree(suite_home, ignore_errors=True)


def home_snapshot(home: Path) -> dict:
    """What Ray and this project could leave in a HOME: ~/.ray and
    ~/.cache/tune_pipeline (every file, size and time), and ~/.cache's entries."""
    seen = {}
    for folder in (home / ".ray", home / ".cache" / "tune_pipeline"):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            stat = path.lstat()
            seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    cache = home / ".cache"
    seen["~/.cache entries"] = sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []
    return seen


@pytest.fixture(autouse=True)
def _environment_restored():
    """Code under test sets os.environ on purpose (WANDB_MODE is decided once
    per driver): what one test sets must not decide the next one's run."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # The image-folder cache must not leak between tests or into ~/.cache.
    monkeypatch.setenv("TUNE_PIPELINE_CACHE", str(tmp_path / "cache"))
    # The machine has no network: Ray's usage report would only time out.
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True)
def private_ray_tmpdir(monkeypatch):
    """Ray's temp folder (its sessions, and the head address a bare ray.init()
    joins) for each test alone: a head another test started and stopped must
    not be joined, nor reported.  Short, for Ray's socket paths."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", folder)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster_utils_environment(tmp_path_factory, monkeypatch):
    """What a head started by Ray's cluster utility in this process needs.
    Token authentication off for it and for the drivers that join it: Ray
    keeps the first auth token it loads for the life of a process, so once
    an earlier test of the run started a Ray in the pytest process, the
    utility's GCS server (which reads the token where HOME says) and this
    process disagreed, and the GCS server exited at start ("Token
    authentication is enabled but Ray couldn't find an authentication
    token": the two-node tests failed in every full run and passed alone).
    A HOME of its own, so the suite's ~/.ray is not read.  And a patient wait
    for its GCS server (30 s ran out in a full run beside a busy process).
    Token authentication is tested where it matters, by test_dashboard.py."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "60")
    return home


def start_cluster_head():
    """A one-CPU head from Ray's cluster utility (with cluster_utils_environment)."""
    from ray.cluster_utils import Cluster

    return Cluster(initialize_head=True, head_node_args={"num_cpus": 1})


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for a module's in-process sweeps, started as `tune search`
    starts its own (ray_session.init_ray); a sweep joins a Ray already running, so
    each test saves the seconds a start and a shutdown cost.  Its temp folder
    is its own and lives until the module ends (each test's own is removed
    after it); what starting it set in os.environ is undone at the end."""
    import shutil
    import tempfile

    import ray

    from tune_pipeline.ray_session import init_ray

    saved = dict(os.environ)
    folder = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    os.environ["RAY_TMPDIR"] = folder
    os.environ.pop("RAY_ADDRESS", None)
    init_ray(None, verbose=False)
    yield ray
    ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(folder, ignore_errors=True)


def mounted_tmpfs(folder: Path, options: str):
    """A tmpfs at `folder` with mount `options` (size=..., ro), unmounted after;
    the test is skipped where this container may not mount (needs root rights)."""
    folder.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: {made.stderr.strip() or made.returncode}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def write_cifar(root: Path, name: str = "cifar10", per_batch: int = 20, seed: int = 0) -> Path:
    """torchvision's pickled CIFAR layout with random images."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, train_files, meta = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "batches.meta"
        label_key, names_key, n_classes = "labels", "label_names", 10
    else:
        folder, train_files, meta = root / "cifar-100-python", ["train"], "meta"
        label_key, names_key, n_classes = "fine_labels", "fine_label_names", 100
    folder.mkdir(parents=True)
    for file in train_files + ["test_batch" if name == "cifar10" else "test"]:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 label_key: rng.integers(0, n_classes, per_batch).tolist()}
        with open(folder / file, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / meta, "wb") as f:
        pickle.dump({names_key: [f"class{i}" for i in range(n_classes)]}, f)
    return root


def write_image_folder(root: Path, classes=("cat", "dog", "frog"), per_class: int = 4,
                       test_split: str = "test") -> Path:
    """Images of mixed sizes and formats, each class a distinct colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), (test_split, 2)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = (40, 48) if i % 2 else (32, 32)
                pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
                pixels[..., c % 3] += 180
                ext = "png" if i % 3 == 2 else "jpg"
                Image.fromarray(pixels).save(folder / f"{i}.{ext}")
    return root


def run_tune(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a fresh interpreter."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "tune_pipeline", *map(str, args)], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def start_tune(*args, cwd, env=None, **popen) -> subprocess.Popen:
    """The CLI started as a user starts it, left running (to interrupt or kill);
    stdout and stderr together unless `popen` says otherwise."""
    options = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    return subprocess.Popen([sys.executable, "-m", "tune_pipeline", *map(str, args)], cwd=cwd,
                            env=dict(os.environ, **(env or {})), **options)


def kill_group(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
    """Signal a process started with start_new_session=True and everything it
    started (a driver and its Ray); a group that has ended already is no error
    (a sweep that finished first: the test's own assertion says so)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    if sig == signal.SIGKILL:
        process.wait()


def wait_until(predicate, timeout: float, what: str, *, process: subprocess.Popen | None = None,
               interval: float = 0.3):
    """Poll `predicate` until it returns something true, and return that.
    Fails naming `what` after `timeout` seconds, or at once (with its output)
    when `process`, the thing being waited on, has ended."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"{what}: the process ended first (exit {process.returncode})\n{output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def create_bucket(client, bucket: str, server: subprocess.Popen) -> None:
    """Create `bucket` with boto3's `client` as soon as moto's `server` answers."""
    def made() -> bool:
        try:
            client.create_bucket(Bucket=bucket)
        except Exception:  # not listening yet: botocore's connection errors vary
            return False
        return True

    wait_until(made, 60, f"moto's server to create the bucket {bucket!r}", process=server)


# Small enough for seconds per trial on the embedded digits dataset.
TINY = ["--set", "max_train_images=256", "--set", "max_test_images=128", "--set", "batch_size=64"]


@pytest.fixture(scope="module")
def digits():
    """The embedded digits, decoded once per test module."""
    from tune_pipeline.data import load_dataset

    return load_dataset("digits")


def digits_config(train_images: int, test_images: int, /, **overrides) -> dict:
    """A validated small_cnn config on a digits subset (seconds per epoch);
    `overrides` win, the subset sizes included."""
    from tune_pipeline.config import validate_config

    return validate_config({"model": "small_cnn", "dataset": "digits", "epochs": 2, "batch_size": 64,
                            "learning_rate": 0.05, "max_train_images": train_images,
                            "max_test_images": test_images, **overrides})


def write_sweep(folder: Path, parameters: dict, name: str = "space.yaml", **top) -> Path:
    import yaml

    data = {"method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": {**{"dataset": {"value": "digits"}, "model": {"value": "small_cnn"}}, **parameters},
            **top}
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def asha_experiment(tmp_path_factory):
    """A real small sweep, made once: six learning rates under ASHA, one of
    them diverging.  Returns (experiment folder, the CLI's result)."""
    folder = tmp_path_factory.mktemp("asha")
    space = write_sweep(folder, {
        "learning_rate": {"values": [0.002, 0.005, 0.01, 0.03, 0.1, 1.0e12]},
        "momentum": {"values": [0.9]},
        "lr_scheduler": {"value": "none"}, "epochs": {"value": 4}},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2, "max_iter": 4})
    # Batch 16: at TINY's 64 (4 steps an epoch) every trial still predicted one class
    # after 4 epochs, its validation accuracy tied with the others', and ASHA stopped none.
    result = run_tune("search", space, "--name", "asha", "--storage-path", folder, *TINY,
                      "--set", "batch_size=16", cwd=folder,
                      env={"TUNE_PIPELINE_CACHE": str(folder / "cache"), "RAY_USAGE_STATS_ENABLED": "0"})
    return folder / "asha", result


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The package as a user installs it: `pip wheel` of a copy of the source
    (pip builds in place, and would leave build/ and *.egg-info in the checkout)."""
    import shutil

    source = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "tune_pipeline", source / "tune_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(out), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return next(out.glob("tune_pipeline-*.whl"))


def install_wheel(wheel: Path, *, target: Path | None = None, venv: Path | None = None) -> None:
    """Install the wheel alone (its dependencies are this interpreter's): into
    a folder for PYTHONPATH (`target`), or into a virtual environment."""
    pip = [sys.executable, "-m", "pip"] + (["--python", str(venv / "bin" / "python")] if venv else [])
    where = ["--target", str(target)] if target is not None else []
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--quiet", *where, str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------ ports, S3, a browser

BUCKET = "sweeps"  # the one bucket s3_env's server holds


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """AWS_* variables pointing at a fresh moto S3 server with one bucket."""
    pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        create_bucket(boto3.client("s3"), BUCKET, server)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def s3_objects(prefix: str) -> list[str]:
    """The keys under `prefix` in the suite's bucket (s3_env's server)."""
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def chromium() -> str:
    """Headless Chromium's path; CI must have it, elsewhere its tests are skipped."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("CI must install chromium (.ci/run does)")
    pytest.skip("headless Chromium is not installed")
