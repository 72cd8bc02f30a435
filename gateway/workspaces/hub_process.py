"""Run the JupyterHub beside the gateway, configured from the gateway's own settings.

`sde hub` runs it in the foreground (operators, systemd); `sde demo` starts it as a child process. The hub's
configuration file is infra/jupyterhub/jupyterhub_config.py; this module only supplies its environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import REPO_ROOT, Settings

CONFIG = REPO_ROOT / "infra" / "jupyterhub" / "jupyterhub_config.py"
SINGLEUSER = Path(os.environ.get("LONDONSDE_HUB_SINGLEUSER_PREFIX", "/opt/londonsde/singleuser"))
PROXY = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"


def hub_environment(settings: Settings) -> dict[str, str]:
    url = urlsplit(settings.workspaces.hub_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONDONSDE_HUB_")}
    env.update({
        "LONDONSDE_HUB_STATE_DIR": str(settings.hub_state_dir),
        "LONDONSDE_HUB_SPAWNER": settings.workspaces.spawner,
        "LONDONSDE_HUB_PUBLIC_IP": url.hostname or "127.0.0.1",
        "LONDONSDE_HUB_PUBLIC_PORT": str(url.port or 8000),
        "LONDONSDE_HUB_EXTRACTS_ROOT": str(settings.extracts_root),
        "LONDONSDE_HUB_HOMES_ROOT": str(settings.homes_root),
        "LONDONSDE_HUB_SINGLEUSER_PREFIX": str(SINGLEUSER),
        "LONDONSDE_HUB_GATEWAY_URL": settings.workspaces.gateway_internal_url,
        "PYTHONPATH": str(REPO_ROOT),
    })
    return env


def missing() -> list[str]:
    """What stops the hub from running workspaces on this machine, in words an operator can act on."""
    problems = []
    if not (SINGLEUSER / "bin" / "jupyterhub-singleuser").exists():
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
    """Workspace users must traverse to their home and read the extracts; nothing else of the instance."""
    for path in (settings.instance_dir, settings.extracts_root, settings.homes_root):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
    settings.hub_state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def hub_command() -> list[str]:
    return [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]


def start(settings: Settings) -> subprocess.Popen[bytes]:
    prepare_folders(settings)
    log = (settings.hub_state_dir / "hub.log").open("ab")
    return subprocess.Popen(hub_command(), cwd=settings.hub_state_dir, env=hub_environment(settings),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
