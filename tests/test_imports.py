"""Ray lives in few modules: the readers (`tune status`, `export`, `plot`,
`report`), `tune train` and validating a search space run where Ray (and
Optuna) cannot be imported.  Each check runs a fresh interpreter in which
`import ray` and `import optuna` fail, as they would on a machine without them."""

import json
import pkgutil
import subprocess
import sys

import yaml

import tune_pipeline

from conftest import ROOT, SEARCH_SPACES
from fake_experiment import QUICKSTART_GRID, make_experiment

# The modules that need Ray: the sweep and what Ray runs or calls back.
RAY_SIDE = {"cluster", "ended_trials", "extend", "hyperband", "integrations", "live_table", "pbt_scheduler",
            "ray_session", "searcher", "sweep", "trainable", "trial_inputs", "tune_adapter"}
# Everything else, listed so a new module must be put on one side or the other.
RAY_FREE = {"augment", "cli", "command_process", "compile_policy", "config", "cpu_share", "data", "distributions", "dry_run", "early_stopping",
            "errors", "experiment", "experiment_record", "export", "internals", "labels", "lock", "metrics",
            "models", "models.convnet", "models.preact_resnet", "models.resnet", "models.vgg", "parameters", "pbt",
            "plots", "points", "progress", "ray_state", "report", "resources", "retention", "run_output", "sampling", "shipped",
            "single_run", "space", "storage", "summary", "sweep_console", "train", "watchdog"}
ENTRY_POINT = "__main__"  # runs the CLI when imported: checked by running commands below

# None in sys.modules makes `import ray` raise ImportError, as an absent package does.
WITHOUT_RAY = "import sys; sys.modules['ray'] = None; sys.modules['optuna'] = None\n"


def without_ray(code: str, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_RAY + code], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def tune_without_ray(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    """`python -m tune_pipeline ARGS` with Ray and Optuna unimportable."""
    return without_ray(f"import runpy; sys.argv = ['tune', *{[str(a) for a in args]!r}]\n"
                       f"runpy.run_module('tune_pipeline', run_name='__main__', alter_sys=True)", cwd=cwd)


def test_every_module_is_ray_free_or_ray_side():
    modules = {m.name.removeprefix("tune_pipeline.")
               for m in pkgutil.walk_packages(tune_pipeline.__path__, "tune_pipeline.")}
    assert not RAY_FREE & RAY_SIDE
    assert modules == RAY_FREE | RAY_SIDE | {ENTRY_POINT}, "classify each new module in RAY_FREE or RAY_SIDE"


def test_ray_free_modules_import_without_ray():
    result = without_ray(f"""
import importlib, json
failed = {{}}
for name in {sorted(RAY_FREE)!r}:
    try:
        importlib.import_module("tune_pipeline." + name)
    except ImportError as exc:
        failed[name] = str(exc)
print(json.dumps(failed))
""")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


def test_the_ray_side_needs_ray():
    """The block works: a module that needs Ray fails to import under it."""
    result = without_ray("import tune_pipeline.tune_adapter")
    assert result.returncode != 0 and "ray" in result.stderr


def test_every_shipped_space_validates_and_previews_without_ray():
    """Parsing, early stopping and the preview's trials need no Ray; bayes
    without Optuna is one clear refusal."""
    result = without_ray(f"""
import json
from tune_pipeline.errors import UserError
from tune_pipeline.sampling import preview_configs
from tune_pipeline.space import load_space
out = {{}}
for path in {[str(p) for p in SEARCH_SPACES]!r}:
    try:
        space = load_space(path)
        out[path] = [len(preview_configs(space, 2)), space.scheduler["type"]]
    except UserError as exc:
        out[path] = exc.one_line()
print(json.dumps(out))
""")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    for path in SEARCH_SPACES:
        if yaml.safe_load(path.read_text()).get("method") == "bayes":
            assert "bayes needs optuna" in outcome[str(path)]
        else:
            assert isinstance(outcome[str(path)], list) and outcome[str(path)][0] == 2, outcome[str(path)]


def test_the_readers_run_without_ray(tmp_path):
    experiment = make_experiment(tmp_path, QUICKSTART_GRID)
    status = tune_without_ray("status", experiment)
    assert status.returncode == 0, status.stderr
    assert "4 finished" in status.stdout
    export = tune_without_ray("export", experiment, "--format", "json")
    assert export.returncode == 0, export.stderr
    assert len(json.loads(export.stdout)) == 4
    report = tune_without_ray("report", experiment, "--output", tmp_path / "report.html")  # its plots too
    assert report.returncode == 0, report.stderr
    assert "<img" in (tmp_path / "report.html").read_text()


def test_tune_train_runs_without_ray(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": "small_cnn", "dataset": "digits", "epochs": 1, "batch_size": 64,
                                      "max_train_images": 128, "max_test_images": 64}))
    result = tune_without_ray("train", config, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "out").glob("tiny*/checkpoint.pt"))
