"""`tune resume` restores the search, not only its trials:
every method, a random space over every distribution family, a sweep past
Ray's pending-trial window, `--restart-errored`, an experiment killed before
Ray's first state, and a sweep whose trials hung.  Sweeps run in-process on
tiny digits subsets and are interrupted deterministically (a callback sends
Ctrl-C once a number of trials has finished)."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import re
import signal
from collections import defaultdict

import pytest

from tune_pipeline import sweep
from tune_pipeline.distributions import DISTRIBUTIONS
from tune_pipeline.experiment import FINISHED, NEVER_STARTED, load_experiment
from tune_pipeline.sweep_console import SweepConsole
from tune_pipeline.ray_state import ray_state_saved
from tune_pipeline.space import load_space
from tune_pipeline.tune_adapter import to_tune

from conftest import run_tune, write_sweep

SMALL = {"max_train_images": {"value": 64}, "max_test_images": {"value": 32}, "batch_size": {"value": 32},
         "epochs": {"value": 1}, "lr_scheduler": {"value": "none"}}


# ------------------------------------------------------------ the search state, without Ray running

# A space of one parameter per distribution, each on a key its draws fit.
EVERY_DISTRIBUTION = {
    "constant": ("epochs", {"value": 1}),
    "categorical": ("optimizer", {"values": ["sgd", "adamw"]}),
    "categorical_w_probabilities": ("lr_scheduler", {"values": ["none", "cosine"], "probabilities": [0.3, 0.7]}),
    "int_uniform": ("lr_patience", {"min": 0, "max": 3}),
    "uniform": ("momentum", {"min": 0.8, "max": 0.95}),
    "q_uniform": ("label_smoothing", {"min": 0.0, "max": 0.2, "q": 0.05}),
    "log_uniform": ("lr_gamma", {"min": -2.3, "max": -0.1}),
    "log_uniform_values": ("learning_rate", {"min": 1.0e-3, "max": 0.1}),
    "q_log_uniform": ("seed", {"min": 0.0, "max": 4.6, "q": 1}),
    "q_log_uniform_values": ("weight_decay", {"min": 1.0e-5, "max": 1.0e-2, "q": 1.0e-5}),
    "inv_log_uniform": ("warmup_epochs", {"min": 2.3, "max": 9.2}),
    "inv_log_uniform_values": ("warmup_epochs", {"min": 0.01, "max": 0.5}),
    "normal": ("lr_gamma", {"mu": 0.5, "sigma": 0.05}),  # refused: a normal can draw <= 0
    "q_normal": ("grad_clip", {"mu": 1.0, "sigma": 0.1, "q": 0.1}),  # refused likewise
    "log_normal": ("grad_clip", {"mu": 0.0, "sigma": 0.5}),
    "q_log_normal": ("grad_clip", {"mu": 0.0, "sigma": 0.5, "q": 0.1}),
    "beta": ("grad_clip", {"a": 2.0, "b": 5.0}),
    "q_beta": ("grad_clip", {"a": 2.0, "b": 5.0, "q": 0.05}),
}
NO_KEY_TAKES = {"normal", "q_normal"}  # every training key is bounded below


def test_every_distribution_is_listed():
    assert set(EVERY_DISTRIBUTION) == set(DISTRIBUTIONS)


@pytest.mark.parametrize("distribution", sorted(set(EVERY_DISTRIBUTION) - NO_KEY_TAKES))
def test_every_distribution_survives_in_rays_saved_search_state(tmp_path, distribution):
    """What Tune saves of the search (placeholders in, objects pickled) draws
    real values again after a restore: a `sample_from` function came back as
    ('__fn_ph', ...), a value every trial created after `tune resume` got."""
    from ray.tune.impl.placeholder import inject_placeholders
    from ray.tune.search.variant_generator import generate_variants

    key, spec = EVERY_DISTRIBUTION[distribution]
    spec = {"distribution": distribution, **spec}
    space = load_space(write_sweep(tmp_path, {key: spec, **{k: v for k, v in SMALL.items() if k != key}},
                                   method="random"))
    resolvers = defaultdict(list)
    saved = inject_placeholders(copy.deepcopy(to_tune(space)["param_space"]), resolvers)
    assert not resolvers  # nothing Tune would need given back on restore
    restored = pickle.loads(pickle.dumps(saved))
    for _ in range(20):
        _, variant = next(generate_variants({"config": restored}))
        value = variant["config"][key]
        assert isinstance(value, (int, float, str)) and not isinstance(value, bool), value


@pytest.mark.parametrize("method, restart, refused", [
    ("random", False, "whose draws of learning_rate Ray cannot restore"),
    ("bayes", True, "resume it without --restart-errored"),
])
def test_an_older_experiment_that_would_resume_wrongly_is_refused(tmp_path, method, restart, refused):
    from fake_experiment import make_experiment

    experiment_dir = make_experiment(tmp_path, {"learning_rate": [0.01]})
    meta = json.loads((experiment_dir / "tune_pipeline.json").read_text())
    meta.update(method=method, space_file=str(tmp_path / "space.yaml"), resources={"cpu": 1},
                resolved_space={"parameters": {
        "learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-3, "max": 0.1}}})
    (experiment_dir / "tune_pipeline.json").write_text(json.dumps(meta))  # no resume_format: older
    args = ["resume", str(experiment_dir)] + (["--restart-errored"] if restart else [])
    from typer.testing import CliRunner

    from tune_pipeline.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and refused in result.output, result.output
    assert not (experiment_dir / "driver.lock").exists()


# ------------------------------------------------------------ sweeps, in-process

class StopAfter:
    """Ctrl-C once `count` trials have finished, armed by a flag file: Ray
    gives the callbacks back on `tune resume`, and there it must not fire."""

    def __new__(cls, count: int, flag):
        from ray import tune

        class _StopAfter(tune.Callback):
            def __init__(self):
                self.done = 0

            def on_trial_complete(self, iteration, trials, trial, **info):
                self.done += 1
                if self.done >= count and os.path.exists(flag):
                    os.remove(flag)
                    os.kill(os.getpid(), signal.SIGINT)

            def __reduce__(self):
                return StopAfter, (count, flag)

        return _StopAfter()


def search(tmp_path, monkeypatch, parameters: dict, *, stop_after: int | None = None, name="exp",
           max_concurrent: int | None = 1, **top):
    """A sweep run here, stopped by Ctrl-C after `stop_after` finished trials."""
    path = write_sweep(tmp_path, {**SMALL, **parameters}, **top)
    space = load_space(path)
    if stop_after is not None:
        flag = tmp_path / "stop.flag"
        flag.write_text("")
        build = sweep.build_callbacks
        monkeypatch.setattr(sweep, "build_callbacks",
                            lambda meta, name, console: build(meta, name, console) + [StopAfter(stop_after, str(flag))])
    options = sweep.SweepOptions(name=name, storage_path=tmp_path / "store", max_concurrent=max_concurrent)
    outcome = sweep.run_sweep(space, options, SweepConsole(stream=io.StringIO(), live=False))
    return tmp_path / "store" / name, outcome


def resume(experiment_dir, restart_errored=False):
    return sweep.resume_sweep(experiment_dir, restart_errored=restart_errored, address=None, verbose=False,
                              console=SweepConsole(stream=io.StringIO(), live=False))


def drawn(trial, keys):
    return {k: trial.config.get(k) for k in keys}


def assert_real_values(experiment, keys):
    for trial in experiment.trials:
        for key in keys:
            value = trial.config.get(key)
            assert isinstance(value, (int, float, str)) and "__fn_ph" not in str(value), (trial.trial_id, key, value)


def assert_counted(experiment_dir, total: int):
    """`tune status`, as a user reads it: every trial once, all finished."""
    shown = run_tune("status", experiment_dir)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.splitlines()[0].endswith(f": {total} trials; {total} finished (done)"), shown.stdout


RANDOM_FAMILIES = {key: {"distribution": d, **spec} for d, (key, spec) in EVERY_DISTRIBUTION.items()
                   if d not in NO_KEY_TAKES and key not in ("warmup_epochs", "grad_clip", "lr_gamma")}
RANDOM_FAMILIES.update(warmup_epochs={"distribution": "inv_log_uniform_values", "min": 0.01, "max": 0.5},
                       grad_clip={"distribution": "q_beta", "a": 2.0, "b": 5.0, "q": 0.05},
                       lr_gamma={"distribution": "log_uniform", "min": -2.3, "max": -0.1})
METHODS = {
    "grid": ({"learning_rate": {"values": [0.01, 0.02, 0.05, 0.1, 0.2]}}, {}),
    "random": (RANDOM_FAMILIES, {"method": "random", "run_cap": 5}),
    "bayes": ({"learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-3, "max": 0.1},
               "momentum": {"distribution": "uniform", "min": 0.8, "max": 0.95}},
              {"method": "bayes", "run_cap": 5}),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_ctrl_c_after_two_trials_then_resume_finishes_the_search(tmp_path, monkeypatch, ray_session, method):
    parameters, top = METHODS[method]
    experiment_dir, first = search(tmp_path, monkeypatch, parameters, stop_after=2, **top)
    assert first.interrupted
    before = load_experiment(experiment_dir)
    keys = [k for k in before.swept]
    finished = {t.trial_id: drawn(t, keys) for t in before.trials if t.status == FINISHED}
    assert len(finished) >= 2

    outcome = resume(experiment_dir)
    after = load_experiment(experiment_dir)
    assert outcome.exit_code == 0 and after.status_counts() == {FINISHED: 5}
    assert_real_values(after, keys)
    for trial in after.trials:  # what finished before is kept as it was, not drawn again
        if trial.trial_id in finished:
            assert drawn(trial, keys) == finished[trial.trial_id]
        assert trial.epochs == 1
    if method == "grid":
        assert sorted(t.config["learning_rate"] for t in after.trials) == [0.01, 0.02, 0.05, 0.1, 0.2]
    else:
        assert len({t.config["learning_rate"] for t in after.trials}) == 5  # five draws, not one
    assert_counted(experiment_dir, 5)


@pytest.mark.slow
def test_a_random_search_past_rays_pending_window_resumes(tmp_path, monkeypatch, ray_session):
    """Ray creates trials only up to its pending window (200 by default, 1
    here): those created after the resume come from the restored search."""
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "1")
    parameters = {"learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-3, "max": 0.1}}
    experiment_dir, first = search(tmp_path, monkeypatch, parameters, stop_after=2, max_concurrent=None,
                                   method="random", run_cap=6)
    assert first.interrupted and len(load_experiment(experiment_dir).trials) < 6
    assert resume(experiment_dir).exit_code == 0
    after = load_experiment(experiment_dir)
    assert after.status_counts() == {FINISHED: 6}
    assert_real_values(after, ["learning_rate"])
    assert_counted(experiment_dir, 6)


FAILING_WHILE_FLAGGED = """\
import os
from tune_pipeline import augment as A

def train_transform(images, ctx):
    if os.path.exists({flag!r}):
        raise RuntimeError("flagged to fail")
    return A.normalize(images, ctx.mean, ctx.std)

def test_transform(images, ctx):
    return A.normalize(images, ctx.mean, ctx.std)
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["random", "bayes"])
def test_restart_errored_reruns_failed_trials_with_their_configs(tmp_path, monkeypatch, ray_session, method):
    flag = tmp_path / "fail.flag"
    flag.write_text("")
    script = tmp_path / "flagged.py"
    script.write_text(FAILING_WHILE_FLAGGED.format(flag=str(flag)))
    parameters = {"runtime_transform_script": {"value": str(script)},
                  "learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-3, "max": 0.1}}
    experiment_dir, first = search(tmp_path, monkeypatch, parameters, method=method, run_cap=3)
    failed = load_experiment(experiment_dir)
    assert first.exit_code == 1 and failed.status_counts() == {"ERROR": 3}
    configs = sorted(t.config["learning_rate"] for t in failed.trials)

    flag.unlink()
    outcome = resume(experiment_dir, restart_errored=True)
    after = load_experiment(experiment_dir)
    assert outcome.exit_code == 0 and after.status_counts() == {FINISHED: 3}
    assert sorted(t.config["learning_rate"] for t in after.trials) == configs  # the same configs again
    assert_counted(experiment_dir, 3)  # not 6: the failed runs' folders are not trials of their own


@pytest.mark.slow
def test_an_experiment_killed_before_rays_first_state_starts_on_resume(tmp_path, monkeypatch, ray_session):
    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):  # the driver dies after Ray wrote tuner.pkl, before its first state
        raise Killed

    monkeypatch.setattr(sweep, "_finish", killed)
    with pytest.raises(Killed):
        search(tmp_path, monkeypatch, {"learning_rate": {"values": [0.02, 0.05, 0.1]}})
    experiment_dir = tmp_path / "store" / "exp"
    assert (experiment_dir / "tuner.pkl").exists() and not ray_state_saved(experiment_dir)
    status = run_tune("status", experiment_dir)
    assert status.returncode == 0 and NEVER_STARTED in status.stdout, status.stdout
    monkeypatch.undo()

    outcome = resume(experiment_dir)
    after = load_experiment(experiment_dir)
    assert outcome.exit_code == 0 and after.status_counts() == {FINISHED: 3}
    assert sorted(t.config["learning_rate"] for t in after.trials) == [0.02, 0.05, 0.1]  # never `{}`
    assert_counted(experiment_dir, 3)



def _search_state(experiment_dir, files=False) -> dict:
    """Ray's newest saved search state, by kind of file (its name without the
    session's date): the files, or their bytes."""
    newest = {}
    for path in sorted(experiment_dir.iterdir()):
        kind = re.match(r"(basic-variant-state|search_gen_state|searcher-state)-", path.name)
        if kind:
            newest[kind.group(1)] = path
    return newest if files else {k: p.read_bytes() for k, p in newest.items()}

@pytest.mark.slow
@pytest.mark.parametrize("method", ["grid", "bayes"])
def test_a_search_state_older_than_its_trials_and_lost_results_resume_to_the_full_count(
        tmp_path, monkeypatch, capsys, ray_session, method):
    """A driver killed while Ray saved its state leaves the search state older
    than the trial list (two writes here; many uploads to a bucket), and
    finished trials whose results never reached the folder.  Restored as saved,
    the search waits forever on a trial it thinks runs (max-concurrent 1)."""
    parameters, top = {"grid": ({"learning_rate": {"values": [0.02, 0.05, 0.1]}}, {}),
                       "bayes": (METHODS["bayes"][0], {"method": "bayes", "run_cap": 3})}[method]
    experiment_dir, first = search(tmp_path, monkeypatch, parameters, stop_after=1, **top)
    assert first.interrupted
    saved_search = _search_state(experiment_dir)  # created one or two trials, one of them running
    assert saved_search and resume(experiment_dir).exit_code == 0
    for kind, newest in _search_state(experiment_dir, files=True).items():
        newest.write_bytes(saved_search[kind])
    done = load_experiment(experiment_dir)
    assert done.status_counts() == {FINISHED: 3}
    lost = done.trials[-1]
    (lost.path / "result.json").unlink()  # finished, its results never copied

    capsys.readouterr()
    outcome = resume(experiment_dir)
    assert outcome.exit_code == 0
    said = capsys.readouterr()
    assert f"({lost.trial_id}) finished, but the results never reached" in said.err
    # The restored live table's count: the lost trial is replaced, not added (3 trials, never 4).
    counted = re.findall(r"^\[(\d+)/(\d+)\] ", said.out, re.MULTILINE)
    assert counted and {total for _, total in counted} == {"3"}, said.out
    after = load_experiment(experiment_dir)
    assert after.status_counts() == {FINISHED: 3} and lost.trial_id not in {t.trial_id for t in after.trials}
    assert all(t.epochs == 1 and t.history for t in after.trials)
    if method == "grid":  # the lost configuration ran again, and nothing twice
        assert sorted(t.config["learning_rate"] for t in after.trials) == [0.02, 0.05, 0.1]
    assert_counted(experiment_dir, 3)


HANGS_AT_EPOCH_2 = """\
import time
from tune_pipeline import augment as A

def train_transform(images, ctx):
    if ctx.epoch == 1:
        time.sleep(100000)  # one C call: the exception that stops a run cannot land
    return A.normalize(images, ctx.mean, ctx.std)

def test_transform(images, ctx):
    return A.normalize(images, ctx.mean, ctx.std)
"""


@pytest.mark.slow
@pytest.mark.timeout(600)  # waits out two trial timeouts, twice: 52 s in a loaded full run
def test_trials_stuck_in_one_call_fail_with_their_reason_and_resume_does_not_hang(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANGS_AT_EPOCH_2)
    space = write_sweep(tmp_path, {**SMALL, "epochs": {"value": 3}, "runtime_transform_script": {"value": str(script)},
                                   "trial_timeout": {"value": 6.0}, "learning_rate": {"values": [0.02, 0.05]}})
    env = {"TUNE_PIPELINE_CACHE": str(tmp_path / "cache")}
    swept = run_tune("search", space, "--name", "hung", "--storage-path", tmp_path / "store",
                     "--max-concurrent", "1", cwd=tmp_path, env=env)
    experiment_dir = tmp_path / "store" / "hung"
    reason = "trial_timeout: still running after 6 s"
    shown = swept.stdout + swept.stderr
    assert swept.returncode == 1, shown  # failed, not "interrupted" (130)
    assert shown.count(reason) >= 4  # the live line and the summary, for each trial
    assert "trials: 2 failed" in shown and "tune resume" not in shown
    for ray_words in ("raylet", "worker died", "Traceback", "ActorDiedError"):
        assert ray_words not in shown, shown
    status = run_tune("status", experiment_dir)
    assert "2 failed" in status.stdout and status.stdout.count(reason) == 2, status.stdout
    export = run_tune("export", experiment_dir, "--format", "json")
    rows = json.loads(export.stdout)
    assert [r.get("status") for r in rows] == ["failed", "failed"], rows

    again = run_tune("resume", experiment_dir, env=env, timeout=300)  # used to hang with no output
    assert again.returncode == 1 and "trials: 2 failed" in again.stdout, again.stdout + again.stderr


@pytest.mark.slow
def test_a_sweep_an_older_version_started_trims_the_trials_that_end_after_its_resume(tmp_path, monkeypatch,
                                                                                   ray_session):
    """Ray restores the callbacks it pickled: a sweep started before the
    driver trimmed ended trials (ended_trials.py) has none that does.  `tune
    resume` adds it: the trials that end from then on keep of Ray's running
    analysis only the sweep's metric."""
    from tune_pipeline.ended_trials import EndedTrialsTrimmed

    build = sweep.build_callbacks  # as an older version built them
    monkeypatch.setattr(sweep, "build_callbacks", lambda meta, name, console: [
        c for c in build(meta, name, console) if not isinstance(c, EndedTrialsTrimmed)])
    experiment_dir, first = search(tmp_path, monkeypatch, {"learning_rate": {"values": [0.02, 0.05, 0.1]}},
                                   stop_after=1)
    assert first.interrupted
    ended_before = {t.trial_id for t in load_experiment(experiment_dir).trials if t.status == FINISHED}
    assert resume(experiment_dir).exit_code == 0

    state_file = max(experiment_dir.glob("experiment_state-*.json"), key=lambda p: p.name)
    analysed = {json.loads(trial)["trial_id"]: set(json.loads(runtime)["metric_analysis"])
                for trial, runtime in json.loads(state_file.read_text())["trial_data"]}
    assert len(analysed) == 3 and ended_before
    for trial_id, keys in analysed.items():
        if trial_id in ended_before:
            assert len(keys) > 1, keys  # ended under the old callbacks: untouched
        else:
            assert keys == {"val_accuracy"}, (trial_id, keys)
