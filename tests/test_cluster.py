"""A Ray cluster whose worker node shares no disk with the driver, as on a
real cluster: the worker runs in a mount namespace of its own where the
checkout, the driver's folders (its transform scripts, data, cache, HOME) and
its Ray temp folder are empty, with the package installed from the built
wheel and nothing else.  The experiment lives in S3 (moto's server)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import tune_pipeline

from conftest import (BUCKET, ROOT, TINY, TRANSFORM_SCRIPTS, install_wheel, kill_group, run_tune, s3_objects,
                      start_cluster_head, wait_until, write_sweep)

pytestmark = pytest.mark.slow


def _can_hide_paths() -> bool:
    """A private mount namespace with tmpfs mounts needs root (CAP_SYS_ADMIN)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs probe /mnt"], capture_output=True)
    return probe.returncode == 0


# Run on the worker node: what it sees of the driver's paths, and where its package comes from.
CHECK_WORKER = """
import json, os, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

paths = json.loads(sys.argv[2])

def look():
    import tune_pipeline
    return {"exists": {p: os.path.exists(p) for p in paths}, "package": tune_pipeline.__file__}

ray.init(address=sys.argv[1], log_to_driver=False)
head = ray.get_runtime_context().get_node_id()
workers = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head]
seen = ray.get(ray.remote(look).options(scheduling_strategy=NodeAffinitySchedulingStrategy(
    workers[0], soft=False)).remote())
print(json.dumps({"worker": workers[0], **seen}))
"""


def test_a_worker_node_with_none_of_the_drivers_files_runs_trials_and_resume(
        built_wheel, s3_env, private_ray_tmpdir, cluster_utils_environment, tmp_path, tmp_path_factory):
    if not _can_hide_paths():
        pytest.skip("hiding the driver's paths needs a private mount namespace (root)")
    from tune_pipeline.experiment import load_experiment

    package = tmp_path_factory.mktemp("worker-package")  # outside every hidden folder
    install_wheel(built_wheel, target=package)
    # Transform scripts at paths only the driver has.
    scripts = []
    for source in TRANSFORM_SCRIPTS:
        mine = tmp_path / "my_scripts" / f"mine_{source.name}"
        mine.parent.mkdir(exist_ok=True)
        mine.write_text(source.read_text())
        scripts.append(str(mine))
    source_root = Path(tune_pipeline.__file__).resolve().parents[1]  # the checkout, or an editable install's
    folders = [tmp_path, Path(private_ray_tmpdir), Path.home()]  # scripts, data and cache; Ray's; HOME
    hidden = sorted({str(ROOT), str(source_root), *map(str, folders)})
    for folder in folders:
        (folder / "driver-only").write_text("")
    driver_paths = scripts + [str(ROOT / "pyproject.toml"), str(source_root / "tune_pipeline" / "__init__.py"),
                              *(str(folder / "driver-only") for folder in folders)]
    assert all(map(os.path.exists, driver_paths))

    head = start_cluster_head()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(package), **s3_env)
    # The worker node: its own mount namespace, every hidden folder an empty tmpfs there.
    worker = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'for p in "$@"; do mount -t tmpfs -o size=512m driver-hidden "$p" || exit 1; done; '
         f'exec "{sys.executable}" -m ray.scripts.scripts start --address={head.address} --num-cpus=1 '
         '--disable-usage-stats --block', "sh", *hidden],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    uri = f"s3://{BUCKET}/apart/run"
    try:
        def check_worker():
            checked = subprocess.run([sys.executable, "-c", CHECK_WORKER, head.address,
                                      json.dumps(driver_paths)], capture_output=True, text=True, timeout=300)
            return checked if checked.returncode == 0 else None

        checked = wait_until(check_worker, 300, "the worker node to run a task", process=worker, interval=2)
        seen = json.loads(checked.stdout.strip().splitlines()[-1])
        # On the worker none of the driver's paths exists, and the package is the wheel's.
        assert not any(seen["exists"].values()), seen
        assert Path(seen["package"]).is_relative_to(package)

        space = write_sweep(tmp_path, {"runtime_transform_script": {"values": scripts},
                                       "learning_rate": {"values": [0.02, 0.05]}, "epochs": {"value": 2}})
        driver = subprocess.Popen(
            [sys.executable, "-m", "tune_pipeline", "search", str(space), "--name", "run", "--storage-path",
             f"s3://{BUCKET}/apart", "--address", head.address, *TINY], cwd=tmp_path,
            env=dict(os.environ, TUNE_GLOBAL_CHECKPOINT_S="0"),  # results in the bucket at every step
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_until(lambda: any(k.endswith("result.json") for k in s3_objects("apart/run/")), 300,
                       "a result in the bucket", process=driver)
        finally:
            kill_group(driver)
        resumed = run_tune("resume", uri, "--address", head.address, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr

        experiment = load_experiment(uri)
        assert experiment.status_counts() == {"TERMINATED": 4}
        assert all(t.epochs == 2 for t in experiment.trials)
        nodes = {h["node_id"] for t in experiment.trials for h in t.history}
        # Some trials ran on the worker that has none of the driver's files.  Which node
        # takes the rest is Ray's choice: under load the worker may take them all.
        assert seen["worker"] in nodes
        assert sorted(experiment.record.transform_scripts) == sorted(scripts)  # what every trial ran
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        head.shutdown()
