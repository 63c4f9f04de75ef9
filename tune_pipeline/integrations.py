"""What a sweep connects to outside Ray: wandb (its mode chosen once,
before any trial, and never a prompt or a 90-second wait; Ray's logger
callback in that mode) and the bucket an experiment lives in (a Ray
callback that stops the sweep with one line once it is gone)."""

from __future__ import annotations

import os

from tune_pipeline.errors import RunFailed, UserError
from tune_pipeline.storage import location


class StorageLost(RunFailed):
    """The experiment's storage (a bucket) stopped answering mid-sweep."""


def storage_lost(uri, reason: str) -> StorageLost:
    return StorageLost(
        f"the sweep stopped: its storage does not answer ({reason}); the trials' state and checkpoints "
        f"are as last uploaded to {uri}; once it answers, continue with `tune resume {uri}` (it takes "
        f"over this driver's driver.lock if it is still there)")


def storage_watch(uri: str):
    """A Ray callback: when a trial fails, is the bucket still there?  Once it
    is gone every trial fails in turn (each checks the bucket as it starts),
    and each failure is recorded as the trial's own; the first one stops the
    sweep instead, with one line."""
    from ray import tune

    class StorageWatch(tune.Callback):
        def __init__(self, uri: str):
            self.uri = uri

        def on_trial_error(self, iteration, trials, trial, **info):
            try:
                location(self.uri).exists()
            except UserError as exc:
                reason = exc.one_line().split("cannot reach this storage (", 1)[-1].split("); check", 1)[0]
                raise storage_lost(self.uri, reason) from None

    return StorageWatch(uri)


def wandb_callback(project: str, group: str):
    """Ray's WandbLoggerCallback in the mode `wandb_environment` chose."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    class WandbLogger(WandbLoggerCallback):
        """Reads the mode when the sweep starts, not when it was built: a
        resumed sweep (Ray unpickles this callback) logs as its own driver
        decided, offline where the network has gone, nothing when disabled."""

        def setup(self, *args, **kwargs):
            self.kwargs["mode"] = os.environ.get("WANDB_MODE", "offline")
            if self.kwargs["mode"] != "disabled":
                super().setup(*args, **kwargs)

        def log_trial_start(self, trial):
            if self.kwargs.get("mode") != "disabled":
                super().log_trial_start(trial)

        def log_trial_result(self, iteration, trial, result):
            if self.kwargs.get("mode") != "disabled":
                super().log_trial_result(iteration, trial, result)

        def log_trial_end(self, trial, failed=False):
            if trial in self._trial_queues:
                super().log_trial_end(trial, failed)

        def on_experiment_end(self, trials, **info):
            if self._trial_logging_futures:
                super().on_experiment_end(trials, **info)

    return WandbLogger(project=project, group=group, log_config=True,
                       mode=os.environ.get("WANDB_MODE", "offline"))


WANDB_PROBE_SECONDS = 5.0  # wandb itself waits 90 s before giving up on its server
WANDB_SERVER = "https://api.wandb.ai"


def wandb_environment(console=None) -> str:
    """How this driver's trials log to wandb, decided once, before any trial,
    and set in WANDB_MODE: `disabled` when the user says so (nothing is
    written), `offline` without an API key or when wandb's server does not
    answer within WANDB_PROBE_SECONDS (the runs are kept on disk for `wandb
    sync`), else `online`.  Never a prompt, never a 90-second wait."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "dryrun":  # wandb's old word for offline
        mode = "offline"
    if mode not in ("disabled", "offline"):
        have_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
        mode = "online"
        if not have_key:
            mode = "offline"
        else:
            server = os.environ.get("WANDB_BASE_URL") or WANDB_SERVER
            problem = _unreachable(server, WANDB_PROBE_SECONDS)
            if problem:
                mode = "offline"
                if console is not None:
                    console.note(f"wandb: {server} does not answer ({problem}): logging offline; the runs are "
                                 f"kept in each trial's folder for `wandb sync`")
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    return mode


def _unreachable(url: str, seconds: float) -> str | None:
    """Why `url` gives no HTTP answer within `seconds` (any status is an
    answer), or None.  In a thread, so a resolver that hangs is bounded too."""
    import threading
    import urllib.error
    import urllib.request

    outcome: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(url, timeout=seconds).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered
        except Exception as exc:  # noqa: BLE001 - every failure means: not reachable
            reason = getattr(exc, "reason", exc)
            outcome.append(getattr(reason, "strerror", None) or str(reason) or type(reason).__name__)

    thread = threading.Thread(target=probe, daemon=True, name="wandb-probe")
    thread.start()
    thread.join(seconds + 1)
    return outcome[0] if outcome else f"no answer in {seconds:g} s"


def _netrc_has_wandb() -> bool:
    import netrc
    try:
        return any("wandb" in host for host in netrc.netrc().hosts)
    except (OSError, netrc.NetrcParseError):
        return False
