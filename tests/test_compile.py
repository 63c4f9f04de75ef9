"""`compile`: true, false or auto; auto's rule; and one compile cache per
experiment that a later trial of the same graph loads instead of compiling."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from tune_pipeline import compile_policy
from tune_pipeline.compile_policy import COMPILE_AUTO_MIN_TRIALS, resolve_compile
from tune_pipeline.config import validate_config
from tune_pipeline.errors import UserError
from tune_pipeline.ray_session import concurrent_trials, trials_per_compile
from tune_pipeline.space import parse_space
from tune_pipeline.trainable import COMPILE_CACHE, compile_cache_dir

from conftest import ROOT

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.mark.parametrize("text, value", [("true", True), ("false", False), ("auto", "auto")])
def test_compile_takes_true_false_or_auto_from_yaml(text, value):
    got = validate_config({"compile": yaml.safe_load(text)})["compile"]
    assert got == value and type(got) is type(value)  # YAML's true stays a bool, not "true"


@pytest.mark.parametrize("bad", ["on", "Auto", 1, None, 0.5])
def test_any_other_compile_value_is_refused_naming_the_choices(bad):
    with pytest.raises(UserError) as err:
        validate_config({"compile": bad}, source="run.yaml")
    assert err.value.problems == [f"run.yaml: compile: must be true, false or auto, got {bad!r}"]


@pytest.mark.parametrize("setting", [True, False])
def test_an_explicit_setting_is_obeyed_everywhere(setting):
    for device in (CPU, CUDA, MPS):
        for trials in (1, 100):
            assert resolve_compile(setting, device, trials) is setting


def test_auto_compiles_only_on_cuda_with_enough_trials_per_cold_compile():
    many = COMPILE_AUTO_MIN_TRIALS
    assert resolve_compile("auto", CUDA, many)
    assert not resolve_compile("auto", CUDA, many - 1)
    assert not resolve_compile("auto", CUDA)  # `tune train`: one run pays the whole compile
    assert not resolve_compile("auto", torch.device("cuda:1"), 1)
    assert resolve_compile("auto", torch.device("cuda:1"), many)
    for device in (CPU, MPS):  # measured on CPU: the compiled step is slower than eager
        assert not resolve_compile("auto", device, 1000)


def _space(tmp_path, parameters: dict, method="grid", **tune):
    raw = {"method": method, "metric": {"name": "val_accuracy", "goal": "maximize"},
           "parameters": parameters, **({"tune": tune} if tune else {})}
    return parse_space(raw, tmp_path / "space.yaml")


@pytest.mark.parametrize("parameters, method, tune, expected", [
    ({"learning_rate": {"values": [0.1, 0.2, 0.3, 0.4]}}, "grid", {}, 4),  # lr: one graph
    ({"learning_rate": {"values": [0.1, 0.2]}, "model": {"values": ["small_cnn", "resnet18"]}},
     "grid", {}, 2),
    ({"batch_size": {"values": [64, 128, 256]}}, "grid", {"num_samples": 2}, 2),  # grid repeated twice
    ({"model": {"values": ["small_cnn", "resnet18"]}}, "random", {"num_samples": 10}, 5),
    ({"batch_size": {"distribution": "int_uniform", "min": 32, "max": 256}}, "random",
     {"num_samples": 10}, 1),  # every trial its own shape
])
def test_trials_per_graph_counts_the_trials_that_can_share_one_compile(tmp_path, parameters, method,
                                                                        tune, expected):
    assert _space(tmp_path, parameters, method, **tune).trials_per_graph() == expected


def _cluster(*nodes):
    """A stand-in for the `ray` module: alive nodes with these (CPU, GPU)."""
    return SimpleNamespace(nodes=lambda: [{"Alive": True, "Resources": {"CPU": c, "GPU": g}} for c, g in nodes]
                           + [{"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}])


@pytest.mark.parametrize("nodes, resources, max_concurrent, expected", [
    ([(2.0, 0.0)], {"cpu": 1.0, "gpu": 0.0}, None, 2),        # this machine: two 1-CPU trials
    ([(16.0, 1.0)], {"cpu": 2.0, "gpu": 0.25}, None, 4),      # 4 trials share the GPU
    ([(16.0, 1.0), (16.0, 1.0)], {"cpu": 2.0, "gpu": 0.25}, None, 8),
    ([(16.0, 1.0)], {"cpu": 2.0, "gpu": 0.25}, 1, 1),         # max_concurrent_trials caps it
    ([(1.0, 0.0)], {"cpu": 2.0, "gpu": 0.0}, None, 1),
])
def test_concurrent_trials_is_what_the_nodes_hold_capped(nodes, resources, max_concurrent, expected):
    assert concurrent_trials(_cluster(*nodes), resources, max_concurrent) == expected


def test_trials_that_start_together_each_pay_a_cold_compile(tmp_path):
    # 8 trials of one graph, 4 at once on one GPU: each cold compile serves 2 trials,
    # too few for auto; one at a time, 8.
    space = _space(tmp_path, {"learning_rate": {"values": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}})
    gpu_node = _cluster((16.0, 1.0))
    assert trials_per_compile(space, gpu_node, {"cpu": 2.0, "gpu": 0.25}, None) == 2
    assert not resolve_compile("auto", CUDA, trials_per_compile(space, gpu_node, {"cpu": 2.0, "gpu": 0.25}, None))
    assert resolve_compile("auto", CUDA, trials_per_compile(space, gpu_node, {"cpu": 2.0, "gpu": 0.25}, 1))


def test_a_trial_resolves_compile_once_sets_the_cache_and_reports_it(tmp_path, monkeypatch):
    from tune_pipeline import trainable

    seen, reports = {}, []

    def fake_fit(cfg, *, dataset, resume_state, on_epoch, on_batch=None, script=None):
        seen.update(compile=cfg["compile"], cache=os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
        on_epoch({"epoch": 1}, lambda: {"config": dict(cfg)})

    storage = _storage("local", str(tmp_path / "exp"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(trainable, "fit", fake_fit)
    monkeypatch.setattr(trainable, "_use_assigned_cpus", lambda: None)
    monkeypatch.setattr(trainable, "resolve_device", lambda name: CUDA)  # as on a GPU node
    monkeypatch.setattr(trainable.ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "n"))
    monkeypatch.setattr(trainable.tune, "get_context", lambda: SimpleNamespace(get_storage=lambda: storage))
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint: reports.append(metrics))

    trainable.train_trial({"compile": "auto", "device": "cuda"}, trials_per_compile=COMPILE_AUTO_MIN_TRIALS)
    assert seen == {"compile": True, "cache": str(tmp_path / "exp" / COMPILE_CACHE)}
    assert reports[-1]["compiled"] is True

    seen.clear()
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    trainable.train_trial({"compile": "auto", "device": "cuda"}, trials_per_compile=1)
    assert seen == {"compile": False, "cache": None} and reports[-1]["compiled"] is False


def _storage(kind: str, path: str, name: str = "exp"):
    return SimpleNamespace(storage_filesystem=SimpleNamespace(type_name=kind),
                           experiment_fs_path=path, experiment_dir_name=name)


def test_a_local_experiment_owns_its_compile_cache(tmp_path):
    assert compile_cache_dir(_storage("local", str(tmp_path / "exp"))) == tmp_path / "exp" / COMPILE_CACHE


def test_on_object_storage_each_node_keeps_a_local_cache_named_after_the_experiment():
    folder = compile_cache_dir(_storage("s3", "bucket/prefix/exp", "exp"))
    assert folder.is_absolute() and folder.name == "exp"
    assert folder != compile_cache_dir(_storage("s3", "bucket/prefix/other", "other"))


# A run in a fresh process, as a trial on another actor or node: the counters
# say whether inductor compiled or loaded each graph.
_RUN = """
import json, sys, torch
from torch._dynamo.utils import counters
from tune_pipeline.config import validate_config
from tune_pipeline.data import Dataset
from tune_pipeline.train import fit
g = torch.Generator().manual_seed(0)
x = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
y = lambda n: torch.randint(0, 10, (n,), generator=g)
data = Dataset("random", x(32), y(32), x(32), y(32), [str(i) for i in range(10)], (.5, .5, .5), (.25, .25, .25))
cfg = validate_config({"model": "small_cnn", "compile": True, "device": "cpu", "epochs": 1,
                       "batch_size": 32, "val_fraction": 0, "amp": False, "test_time_flip": False})
fit(cfg, dataset=data)
print(json.dumps(dict(counters["inductor"])))
"""


@pytest.mark.slow
def test_a_second_trial_loads_the_graphs_the_first_one_compiled(tmp_path):
    cache = compile_cache_dir(_storage("local", str(tmp_path / "exp")))
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

    def trial() -> dict:
        out = subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True, text=True,
                             timeout=600, check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = trial()
    assert first.get("fxgraph_cache_miss", 0) > 0 and not first.get("fxgraph_cache_hit")
    assert any(Path(cache).rglob("*")), "the first trial left nothing in the experiment's cache"
    second = trial()
    assert second.get("fxgraph_cache_hit") == first["fxgraph_cache_miss"]
    assert not second.get("fxgraph_cache_miss")


def test_train_from_trains_what_the_trial_resolved_auto_to(tmp_path):
    from fake_experiment import make_experiment

    from tune_pipeline.single_run import config_from_experiment

    experiment = make_experiment(tmp_path, {"compile": ["auto"], "learning_rate": [0.1]}, epochs=2)
    for results in experiment.glob("trial_*/result.json"):
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        results.write_text("".join(json.dumps({**row, "compiled": True}) + "\n" for row in rows))
    config, _, _ = config_from_experiment(str(experiment), None)
    assert config["compile"] is True and config["learning_rate"] == 0.1


def test_a_resumed_trial_compiles_as_it_started(tmp_path, monkeypatch):
    from tune_pipeline import trainable

    seen = {}
    checkpoint_dir = tmp_path / "checkpoint"
    checkpoint_dir.mkdir()
    torch.save({"config": {"compile": True}}, checkpoint_dir / trainable.STATE_FILE)
    checkpoint = SimpleNamespace(as_directory=lambda: contextlib.nullcontext(str(checkpoint_dir)))
    storage = _storage("local", str(tmp_path / "exp"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(trainable, "fit", lambda cfg, **kw: seen.update(
        compile=cfg["compile"], cache=os.environ.get("TORCHINDUCTOR_CACHE_DIR")))
    monkeypatch.setattr(trainable, "_use_assigned_cpus", lambda: None)
    monkeypatch.setattr(trainable.tune, "get_context", lambda: SimpleNamespace(get_storage=lambda: storage))
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: checkpoint)
    # On a CPU node, auto would resolve to eager; the trial started compiled.
    trainable.train_trial({"compile": "auto", "device": "cpu"}, trials_per_compile=100)
    assert seen == {"compile": True, "cache": str(tmp_path / "exp" / COMPILE_CACHE)}


def test_the_graph_count_and_the_recorded_choice_are_read_from_one_place():
    policy = compile_policy
    assert policy.trials_per_graph(12, {"model": ["a", "b"], "learning_rate": [0.1, 0.2, 0.3]}) == 6
    assert policy.trials_per_graph(12, {"batch_size": []}) == 1  # a numeric distribution: each value its own graph
    assert policy.trials_per_compile(6, 3) == 2
    assert policy.compiled_as_run([{"compiled": False}, {"compiled": True}]) is True
    assert policy.compiled_as_run([{"epoch": 1}]) is None
