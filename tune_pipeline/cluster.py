"""A local Ray head with its dashboard, for `tune dashboard`.

The dashboard runs arbitrary jobs for whoever can reach it, so it binds to
loopback unless the user asks for more, and then is warned."""

from __future__ import annotations

import logging
import subprocess
import sys

from tune_pipeline.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def running_dashboard_url() -> str | None:
    """The dashboard URL of a Ray head already running on this machine, if any."""
    import ray

    try:
        context = ray.init(address="auto", log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError):
        return None
    url = getattr(context, "dashboard_url", None)
    ray.shutdown()
    return f"http://{url}" if url and "://" not in url else url or None


def _ray_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args],
                          capture_output=True, text=True)


def start_dashboard(host: str, port: int, allow_remote: bool, warn) -> tuple[str, bool]:
    if not is_loopback(host):
        if not allow_remote:
            raise UserError(f"--host {host} exposes the Ray dashboard, which lets anyone who reaches it "
                            f"run code on this machine; add --allow-remote if that is what you want")
        warn(f"warning: the Ray dashboard on {host}:{port} lets anyone who can reach it run code here")
    url = running_dashboard_url()
    if url:
        return url, False
    done = _ray_cli("start", "--head", "--include-dashboard=true", f"--dashboard-host={host}",
                    f"--dashboard-port={port}", "--disable-usage-stats")
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise UserError(f"ray start failed: {lines[-1] if lines else 'no output'}")
    return running_dashboard_url() or f"http://{host}:{port}", True


def stop_ray() -> None:
    _ray_cli("stop", "--force")
