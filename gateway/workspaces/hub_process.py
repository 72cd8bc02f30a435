"""Run the JupyterHub beside the gateway, configured from the gateway's own settings.

`sde hub` runs it in the foreground (operators, systemd); `sde demo` starts it as a child process. The hub's
configuration file is infra/jupyterhub/jupyterhub_config.py; this module only supplies its environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config import REPO_ROOT, Settings
from gateway.host_permissions import secure_instance

CONFIG = REPO_ROOT / "infra" / "jupyterhub" / "jupyterhub_config.py"
PROXY = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
STOP_SECONDS = 30


def singleuser_prefix(settings: Settings) -> Path:
    """The workspace environment: the settings', unless LONDONSDE_SINGLEUSER_PREFIX names a test build."""
    override = os.environ.get("LONDONSDE_SINGLEUSER_PREFIX") or os.environ.get("LONDONSDE_HUB_SINGLEUSER_PREFIX")
    return Path(override) if override else settings.workspaces.singleuser_prefix


def hub_environment(settings: Settings) -> dict[str, str]:
    """Every hub setting, from the gateway's own settings (infra/jupyterhub/hub_settings.py reads these)."""
    ws = settings.workspaces
    url = urlsplit(ws.hub_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONDONSDE_HUB_")}
    env.update({
        "LONDONSDE_HUB_STATE_DIR": str(settings.hub_state_dir),
        "LONDONSDE_HUB_SPAWNER": ws.spawner,
        "LONDONSDE_HUB_PUBLIC_IP": url.hostname or "127.0.0.1",
        "LONDONSDE_HUB_PUBLIC_PORT": str(url.port or 8000),
        "LONDONSDE_HUB_BASE_URL": url.path.rstrip("/") + "/" if url.path else "/",
        "LONDONSDE_HUB_HUB_PORT": str(ws.hub_api_port),
        "LONDONSDE_HUB_PROXY_API_PORT": str(ws.proxy_api_port),
        "LONDONSDE_HUB_BRIDGE": ws.bridge,
        "LONDONSDE_HUB_SUBNET": ws.subnet,
        "LONDONSDE_HUB_UID_BASE": str(ws.uid_base),
        "LONDONSDE_HUB_UID_COUNT": str(ws.uid_count),
        "LONDONSDE_HUB_RUNTIME_ROOT": str(ws.runtime_root),
        "LONDONSDE_HUB_START_TIMEOUT": str(int(ws.start_timeout)),
        "LONDONSDE_HUB_CULL_IDLE_SECONDS": str(ws.cull_idle_seconds),
        "LONDONSDE_HUB_CULL_EVERY_SECONDS": str(ws.cull_every_seconds),
        "LONDONSDE_HUB_EXTRACTS_ROOT": str(settings.extracts_root),
        "LONDONSDE_HUB_HOMES_ROOT": str(settings.homes_root),
        "LONDONSDE_HUB_SINGLEUSER_PREFIX": str(singleuser_prefix(settings)),
        "LONDONSDE_HUB_GATEWAY_URL": settings.workspaces.gateway_internal_url,
        "LONDONSDE_HUB_CONTENTS_MAX_BYTES": str(ws.contents_max_bytes),
        "LONDONSDE_HUB_TRAFFIC_REPORT_SECONDS": str(ws.traffic_report_seconds),
        "PYTHONPATH": str(REPO_ROOT),
    })
    return env


def missing(settings: Settings) -> list[str]:
    """What stops the hub from running workspaces on this machine, in words an operator can act on."""
    problems = []
    if not (singleuser_prefix(settings) / "bin" / "jupyterhub-singleuser").exists():
        problems.append("the workspace environment is not built (run infra/jupyterhub/build_singleuser_env.sh)")
    if not PROXY.exists():
        problems.append("configurable-http-proxy is not installed (run npm ci)")
    if os.geteuid() != 0:
        problems.append("the sandboxing spawner must start as root (it switches each workspace to its own user)")
    for tool in ("bwrap", "nft", "ip"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not installed")
    return problems


def prepare_folders(settings: Settings) -> None:
    """Every folder private to root: the hub binds each sandbox's extract and home into it (no traversal)."""
    for path in (settings.instance_dir, settings.extracts_root, settings.homes_root, settings.hub_state_dir):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    secure_instance(settings)


def hub_command() -> list[str]:
    return [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]


def start(settings: Settings) -> subprocess.Popen[bytes]:
    prepare_folders(settings)
    log = (settings.hub_state_dir / "hub.log").open("ab")
    return subprocess.Popen(hub_command(), cwd=settings.hub_state_dir, env=hub_environment(settings),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(settings: Settings, hub: subprocess.Popen[bytes]) -> None:
    """Stop the hub and leave nothing of it on the host: processes, sandboxes, firewall table, bridge, mounts.

    SIGTERM lets the hub stop every workspace and its proxy; the idle culler is in the hub's process group and
    gets it too. Whatever is still there after STOP_SECONDS is killed, then the host is swept by name.
    """
    if hub.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hub.pid, signal.SIGTERM)
        try:
            hub.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(hub.pid, signal.SIGKILL)  # a service that outlived its hub
    _kill_proxy(settings.hub_state_dir / "proxy.pid")  # the proxy has a session of its own
    if settings.workspaces.spawner == "sandbox":
        sandbox_host = _infra_module("sandbox_spawner")
        sandbox_host.cleanup_instance(settings.workspaces.bridge, settings.homes_root)


def _kill_proxy(pid_file: Path) -> None:
    """The hub stops its proxy when it shuts down cleanly; after a kill, the proxy is still there."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"configurable-http-proxy" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _infra_module(name: str) -> Any:
    """A module of infra/jupyterhub (the hub's side), which the gateway does not otherwise import."""
    import importlib

    folder = str(REPO_ROOT / "infra" / "jupyterhub")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(name)
