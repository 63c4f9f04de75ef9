"""The Ray session a sweep runs in: starting a private local Ray or joining
a head (and telling at once when none answers), sizing trials to the
cluster (a GPU share where there is no GPU, how many trials run at once, a
trial larger than every node), and turning Ray's endless wait for resources
that never come into one line."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tune_pipeline.cluster import TOKEN_REFUSED, join_problem, native_output_captured, own_head, prepare_join
from tune_pipeline.errors import RunFailed, UserError
from tune_pipeline.internals import RAY_RESOURCE_LOGGER, is_unschedulable_warning
from tune_pipeline.resources import resource_problem

if TYPE_CHECKING:
    from tune_pipeline.space import SearchSpace


GCS_START_WAIT_S = 120  # Ray's own default for a head whose GCS state is on disk


def _ray_environment(verbose: bool) -> None:
    # Read by Ray when it starts: keep its banners and dedup notices off the terminal.
    # The old console engine honours verbose=0; the new one prints its banner regardless.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    # A new head waits 30 s for its GCS server to say its port, then raises: on a
    # machine busy with other work that start took longer (a full test run beside
    # a busy process).  Slow is better than a traceback; the user's own value wins.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(GCS_START_WAIT_S))
    if not verbose:
        # A failed trial's result that no one fetched is printed with its whole
        # traceback when Ray shuts down; Tune has recorded the failure already.
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")


def init_ray(address: str | None, verbose: bool, console=None):
    import ray

    _ray_environment(verbose)
    if ray.is_initialized():
        return ray
    if address and address.startswith("ray://"):
        # Under Ray Client the Tuner would run on the cluster while our driver
        # (live table, lock, data loading) runs here; Ray Tune recommends a job.
        raise UserError(f"--address {address}: Ray Client (ray://) is not supported; run `tune search` "
                        f"on the cluster (ssh to the head, or `ray job submit -- tune search ...`) "
                        f"with --address auto")
    kwargs = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR,
                  configure_logging=True)
    # ray.init replaces the SIGTERM handler with one that exits at once (code 15,
    # nothing saved); a handler of the command's own (cli.main: SIGTERM acts
    # as Ctrl-C) is put back.
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        _start_or_join(ray, address, kwargs, console)
    finally:
        if callable(on_sigterm):
            signal.signal(signal.SIGTERM, on_sigterm)
    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return ray


def _start_or_join(ray, address: str | None, kwargs: dict, console) -> None:
    if address == "auto" and not os.environ.get("RAY_ADDRESS"):
        # This user's head on this machine, never Ray's own lookup (it adopts any user's).
        head, what = own_head()
        if head is None:
            raise UserError("--address auto: no Ray head of yours runs on this machine; start one with "
                            "`tune dashboard` or `ray start --head`, or leave out --address")
        _join(ray, head, kwargs, what)
    elif address or os.environ.get("RAY_ADDRESS"):  # the user's choice (RAY_ADDRESS as every Ray program reads it)
        _join(ray, address, kwargs, f"--address {address}" if address else "RAY_ADDRESS")
    else:
        head, what = own_head()
        if head is not None:
            _join(ray, head, kwargs, what)  # a `tune dashboard` head: the sweep shows in its dashboard
        else:
            if what and console is not None:
                console.note(what)
            # A local Ray sized to this machine; the dashboard is `tune dashboard`'s job.
            token_without_home()
            ray.init(address="local", include_dashboard=False, **kwargs)


def token_without_home() -> None:
    """Ray turns on token authentication for a new local Ray and saves the
    token in ~/.ray/auth_token: with a read-only HOME, a traceback.  Then the
    token lives in this process's environment instead (Ray reads
    RAY_AUTH_TOKEN; its workers inherit it) and HOME is left alone."""
    if (os.environ.get("RAY_AUTH_MODE", "token").lower() != "token"
            or os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        return
    folder = Path.home() / ".ray"
    if (folder / "auth_token").exists():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tune-write-probe-"):
            pass
    except OSError:
        import secrets

        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


JOIN_PROBE_SECONDS = 5.0  # a head that does not connect, or answer, in this long is not there


def _address_to_probe(address: str | None) -> str | None:
    """The host:port `ray.init(address)` will try, as Ray picks it: RAY_ADDRESS
    for none or "auto", then this user's head on this machine."""
    chosen = address if address not in (None, "auto") else os.environ.get("RAY_ADDRESS")
    if chosen in (None, "", "auto"):
        return own_head()[0]
    return None if chosen == "local" else chosen


def check_head_answers(address: str | None, what: str) -> None:
    """Ray retries a head that is gone for minutes (forever, with `--address`),
    printing its C++ warnings every 30 s.  A TCP connection, then Ray's own
    handshake, each bounded by JOIN_PROBE_SECONDS, make that one line within
    seconds (the handshake's warnings go where the caller sends fd 2)."""
    target = _address_to_probe(address)
    if not target:
        return  # Ray says itself, at once, that it found no head
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return  # Ray's own words for an address it cannot read
    try:
        with socket.create_connection((host, int(port)), timeout=JOIN_PROBE_SECONDS):
            pass
        reason = None
    except OSError as exc:
        reason = "no answer in {:g} s".format(JOIN_PROBE_SECONDS) if isinstance(exc, TimeoutError) \
            else (exc.strerror or str(exc))
    if reason is None:
        # Something accepts connections there: ask it as Ray does, but with a
        # time limit (a silent listener held ray.init for good).
        from tune_pipeline import internals

        answer = internals.probe_gcs(target, JOIN_PROBE_SECONDS)
        if answer == internals.GCS_WANTS_TOKEN:
            raise UserError(f"{what}: cannot join the Ray cluster: {TOKEN_REFUSED}")
        if answer == internals.GCS_ANSWERS:
            return  # it answers, or refuses in Ray's own words at the join
        reason = f"it takes connections but does not answer as a Ray head in {JOIN_PROBE_SECONDS:g} s"
    raise UserError(f"{what}: no Ray head answers at {target} ({reason}); start one with `tune dashboard` "
                    f"or `ray start --head`, or leave out the address to run on a private local Ray")


def _join(ray, address: str | None, kwargs: dict, what: str) -> None:
    prepare_join(address)  # a loopback head stays on loopback; this user's head gets their token
    try:
        # Ray's C++ lines (its retries, refusals, the probe's handshake): one line of ours instead.
        with native_output_captured() as native:
            check_head_answers(address, what)
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"{what}: cannot join the Ray cluster: {join_problem(exc, native)}") from None


def fit_resources(ray, resources: dict, console) -> dict:
    """A GPU share on a cluster without GPUs would leave every trial pending forever."""
    if resources.get("gpu") and not ray.cluster_resources().get("GPU", 0):
        console.note(f"no GPU in this Ray cluster: ignoring the {resources['gpu']:g} GPU share per trial")
        resources = {**resources, "gpu": 0.0}
    return resources


def concurrent_trials(ray, resources: dict, max_concurrent: int | None) -> int:
    """How many trials run at once: what every alive node holds of one trial's
    resources, summed, capped by max_concurrent_trials."""
    slots = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fits = [have.get("CPU", 0.0) // resources["cpu"]]
        if resources.get("gpu"):
            fits.append(have.get("GPU", 0.0) // resources["gpu"])
        slots += int(min(fits))
    slots = max(1, slots)
    return min(slots, max_concurrent) if max_concurrent else slots


def trials_per_compile(space: SearchSpace, ray, resources: dict, max_concurrent: int | None) -> float:
    """compile_policy.trials_per_compile for this space on this cluster."""
    from tune_pipeline import compile_policy

    return compile_policy.trials_per_compile(space.trials_per_graph(),
                                             concurrent_trials(ray, resources, max_concurrent))


def check_resources(resources: dict, where: str = "resources") -> None:
    """Finite shares: a NaN CPU count passes every `>` test and leaves trials pending forever."""
    problems = [f"{where}.{key}: {problem}" for key, value in resources.items()
                if (problem := resource_problem(key, value))]
    if problems:
        raise UserError(problems)


def largest_node(ray) -> dict:
    """CPU and GPU of the largest alive node: a trial runs on one node, so the
    cluster's total says nothing about whether it fits."""
    sizes = [(node.get("Resources", {}).get("CPU", 0.0), node.get("Resources", {}).get("GPU", 0.0))
             for node in ray.nodes() if node.get("Alive")]
    return {"cpu": max((c for c, _ in sizes), default=0.0), "gpu": max((g for _, g in sizes), default=0.0)}


def check_fits_cluster(ray, resources: dict) -> None:
    """After Ray is up and before any folder is made: a trial larger than every
    node would stay pending forever."""
    largest = largest_node(ray)
    problems = []
    for key, label in (("cpu", "CPUs"), ("gpu", "GPUs")):
        if resources.get(key, 0) > largest[key]:
            problems.append(f"a trial needs {resources[key]:g} {label}; the largest node has {largest[key]:g} "
                            f"(lower resources.{key} or --{key}s-per-trial)")
    if problems:
        raise UserError(problems)


class Unschedulable(RunFailed):
    """Ray found no node for any pending trial (a node left mid-sweep)."""


class _UnschedulableHandler(logging.Handler):
    """Ray Tune only logs a warning when no pending trial fits the cluster and
    then waits forever; raising from the log call stops the sweep with one line."""

    def __init__(self, resources: dict):
        super().__init__(logging.WARNING)
        self.resources = resources

    def emit(self, record: logging.LogRecord) -> None:
        if not is_unschedulable_warning(record):
            return
        import ray

        largest = largest_node(ray) if ray.is_initialized() else {"cpu": 0.0, "gpu": 0.0}
        raise Unschedulable(
            f"no trial can be scheduled: a trial needs {self.resources.get('cpu', 0):g} CPUs and "
            f"{self.resources.get('gpu', 0):g} GPUs; the largest node now has {largest['cpu']:g} CPUs "
            f"and {largest['gpu']:g} GPUs (did a node leave?)")


@contextlib.contextmanager
def unschedulable_is_an_error(resources: dict):
    logger = logging.getLogger(RAY_RESOURCE_LOGGER)
    handler = _UnschedulableHandler(resources)
    saved = logger.level, logger.propagate
    logger.setLevel(logging.WARNING)  # ray.tune is set to ERROR when not verbose
    logger.propagate = False  # our line replaces Ray's paragraph
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
