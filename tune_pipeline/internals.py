"""Every private API of Ray, torch and CPython this package calls, one
function each, with why no public one serves and what a change would break.

Ray is pinned to one minor version (pyproject.toml) because of the Ray ones:
on an upgrade, this file (and experiment.py's reader of Ray's
experiment_state-*.json, ray_state.py, checked by its RAY_FORMAT_TESTED) is what to check.
Each function imports what it uses when called, so importing this module
imports neither Ray nor torch.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

# --- Ray: the local head and the head a sweep joins (cluster.py) ---------------


def ray_temp_dir() -> Path:
    """This user's Ray temp folder (RAY_TMPDIR's `ray`, else TMPDIR's, else
    /tmp/ray), as Ray itself decides it: no public API names it, and copying
    Ray's rule would drift from it."""
    from ray._common.utils import get_default_ray_temp_dir

    return Path(get_default_ray_temp_dir())


def ray_address_file() -> Path:
    """The file where `ray start` records the head `ray.init()` joins
    (`ray_current_cluster`); no public API names it."""
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def ray_auth_token() -> str | None:
    """This user's Ray token, as Ray finds it (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token); Ray has no public reader."""
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        return None
    return loader.get_raw_token(ignore_auth_mode=True) or None


def start_ray_head(node_ip: str, dashboard_host: str, dashboard_port: int) -> dict:
    """Start a Ray head node as `ray start --head` does, but bound to
    `node_ip`: `ray start` turns 127.0.0.1 into the machine's outward address,
    so a loopback-only head has no public way to start.  Token authentication
    as for every new local Ray.  Returns {session, address, url}; the head's
    processes outlive this one."""
    import ray
    from ray._common.usage import usage_lib
    from ray._private.authentication.authentication_token_setup import (
        enable_token_auth_by_default, ensure_token_if_auth_enabled)
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    usage_lib.set_usage_stats_enabled_via_env_var(False)
    enable_token_auth_by_default()
    ensure_token_if_auth_enabled({}, create_token_if_missing=True)
    params = RayParams(node_ip_address=node_ip, include_dashboard=True,
                       dashboard_host=dashboard_host, dashboard_port=dashboard_port)
    node = Node(params, head=True, shutdown_at_exit=False, spawn_reaper=False)
    ray._private.utils.write_ray_address(node.address, node.get_temp_dir_path())
    return {"session": node.get_session_dir_path(), "address": node.address,
            "url": node.address_info.get("webui_url")}


def keep_ray_on_loopback() -> None:
    """Ray read RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, at import; joining a
    loopback head after that import needs the constant itself changed (it is
    read at each lookup).  No public switch."""
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def send_ray_token() -> None:
    """RAY_AUTH_MODE=token for this process and its children, as Ray sets it
    for a head it found by itself; the public way (the variable) is read
    before this point."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()


# --- Ray: joining a head, and a sweep no node can run (sweep.py) ---------------

GRPC_DEADLINE_EXCEEDED = 4  # grpc.StatusCode.DEADLINE_EXCEEDED, as ray.exceptions.RpcError.rpc_code


GCS_ANSWERS, GCS_SILENT, GCS_WANTS_TOKEN = "answers", "silent", "wants a token"


def probe_gcs(target: str, timeout_s: float) -> str:
    """How what listens at `target` answers Ray's first GCS call, within
    `timeout_s`: GCS_SILENT when it takes connections but says nothing (a
    silent listener held ray.init for good), GCS_WANTS_TOKEN when it refuses
    this process's auth token (ray.init retries that refusal for about two
    minutes before it gives up), else GCS_ANSWERS (any other refusal is
    Ray's to word, at the join).  Ray's public join has no time limit; its
    GCS client's standalone probe is private.  Told by the exception's class
    and gRPC code, not by the message's words."""
    from ray._raylet import InnerGcsClient
    from ray.exceptions import AuthenticationError, RpcError

    try:
        InnerGcsClient.standalone(target, None, int(timeout_s * 1000))
    except AuthenticationError:
        return GCS_WANTS_TOKEN
    except RpcError as exc:
        return GCS_SILENT if exc.rpc_code == GRPC_DEADLINE_EXCEEDED else GCS_ANSWERS
    except Exception:  # noqa: BLE001 - any other refusal is Ray's to word, at the join
        return GCS_ANSWERS
    return GCS_ANSWERS


# Ray Tune has no event and no error for "no pending trial fits any node": it
# logs one warning from this logger (its only log call) and waits for ever.
RAY_RESOURCE_LOGGER = "ray.tune.execution.insufficient_resources_manager"


def is_unschedulable_warning(record: logging.LogRecord) -> bool:
    """Ray Tune's warning that no pending trial fits the cluster, told by
    its logger and level, not by the warning's words (which Ray rewords)."""
    return record.name == RAY_RESOURCE_LOGGER and record.levelno >= logging.WARNING


# --- Ray Tune: a restored Tuner's search algorithm (extend.py) ------------------


def set_restored_search_alg(tuner, search_alg) -> None:
    """`Tuner.restore` takes no search algorithm and keeps its settings in a
    private object; the search algorithm is the one of them a resumed run
    reads, and the way `tune extend` adds trials to a finished experiment."""
    tuner._local_tuner._tune_config.search_alg = search_alg


def restored_callbacks(tuner) -> list:
    """The list of callbacks `Tuner.restore` unpickled from the experiment,
    itself (Ray restores the run config it saved, callbacks included, and
    keeps it in a private object): the resume tells the restored live table
    the trials it replaces, and adds what an older version did not pickle."""
    run_config = tuner._local_tuner.get_run_config()
    if run_config.callbacks is None:
        run_config.callbacks = []
    return run_config.callbacks


def saved_search_progress(experiment_dir) -> tuple[int, set, bool] | None:
    """What the newest search state Ray saved in `experiment_dir` (a Path or
    storage.RemotePath) says: how many trials it had created, the ids it
    holds as running (its concurrency limit counts them), and whether it had
    finished; None where there is none of a kind known here, or it does not
    read.  Ray saves it beside its trial list, not with it, and restores it
    without comparing the two.  The layout (SearchGenerator's `counter` and
    its ConcurrencyLimiter's `live_trials`; BasicVariantGenerator's iterators'
    `counter` and `_live_trials`) is private, read with Ray's own pickle."""
    import ray.cloudpickle as cloudpickle
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.search_generator import SearchGenerator

    for template in (SearchGenerator.CKPT_FILE_TMPL, BasicVariantGenerator.CKPT_FILE_TMPL):
        files = sorted(experiment_dir.glob(template.format("*")), key=lambda p: p.name)
        if not files:
            continue
        try:
            state = cloudpickle.loads(files[-1].read_bytes())
        except Exception:  # noqa: BLE001 - damaged: Ray's own restore says how
            return None
        if not isinstance(state, dict):
            return None
        if isinstance(state.get("counter"), int):  # SearchGenerator (bayes, and searches rebuilt on resume)
            limiter = state.get("name:ConcurrencyLimiter") or {}
            return state["counter"], set(limiter.get("live_trials") or ()), bool(state.get("finished"))
        iterators = state.get("_iterators") or []
        # BasicVariantGenerator (grid, random): trial ids count up across its iterators.
        created = getattr(iterators[-1], "counter", None) if iterators else 0
        if not isinstance(created, int):
            return None
        return created, set(state.get("_live_trials") or ()), bool(state.get("_finished"))
    return None


# --- Ray Tune: an ended trial's record in the driver (sweep.py) ----------------


def forget_metric_analysis(trial, keep: str) -> None:
    """Drop an ended trial's running analysis of its results but for the
    metric `keep`.  Ray keeps every trial in the driver for the whole run,
    and with each a max, min, average, last-5 and last-10 average of every
    numeric result key (25 of ours and Ray's), with the deques behind them:
    about 50 KB of the driver's memory per trial, and 15 of the 27 KB the
    trial's entry adds to the state file Ray rewrites whole at every save.
    Only Ray's ExperimentAnalysis and ResultGrid read it, to rank trials by
    one metric (the sweep's, kept); this package reads result.json.  The
    analysis is private (`_TrainingRunMetadata`); where Ray keeps no such
    thing, nothing is done."""
    metadata = getattr(trial, "run_metadata", None)
    analysis, steps = getattr(metadata, "metric_analysis", None), getattr(metadata, "metric_n_steps", None)
    if not isinstance(analysis, dict) or not isinstance(steps, dict):
        return
    # Setting an attribute clears the cached JSON Ray writes at its next save.
    metadata.metric_analysis = {keep: analysis[keep]} if keep in analysis else {}
    metadata.metric_n_steps = {keep: steps[keep]} if keep in steps else {}


# --- CPython: ending a process and stopping a thread --------------------------


def exit_without_teardown(code: int) -> None:
    """Run the exit handlers (wandb removes its temporary folders in one,
    logging flushes in another), flush the streams and end the process
    without finalizing its modules (torch's and Ray's threads: over a second
    after a sweep, BENCHMARKS.md).  `atexit` has no public "run them now"
    that leaves them registered for nothing else; `os._exit` is the only
    exit that skips finalization."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


def thread_may_be_importing(thread_id: int) -> bool:
    """Whether the thread may be inside an import.  `sys._current_frames`
    (documented, "for internal and specialized purposes") is CPython's only
    view of another thread's stack.  That thread runs on while its frames are
    walked, so the chain can change under the walk (seen: an AttributeError
    half-way, a frame's slot reused): then the answer is "maybe"."""
    frame = sys._current_frames().get(thread_id)
    try:
        while frame is not None:
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                return True
            frame = frame.f_back
    except AttributeError:
        return True
    return False


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    """Ask CPython to raise `exc_type` in the thread at its next bytecode.
    Python has no public way to interrupt another thread; this C API is
    CPython's own (stable across versions), reached through ctypes."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


# --- torch: the CPU's native bf16 (train.py) ------------------------------------


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has native bf16 instructions (AVX512-BF16 or AMX
    tiles), as torch's own kernels check it.  torch exposes this only as
    private `torch.cpu._is_*` functions (public `get_cpu_capability` says
    AVX512, not which extensions); should a later torch drop them, this says
    False: fp32, the choice that is never slow."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)
