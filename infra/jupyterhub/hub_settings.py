"""Settings for the londonsde JupyterHub, from environment variables and an optional JSON file.

Every setting has an environment variable ``LONDONSDE_HUB_<NAME>`` (upper case). A JSON file
named by ``LONDONSDE_HUB_SETTINGS_FILE`` may hold the same names in lower case; environment
variables win over the file, and the file over the defaults below. See docs/workspaces.md.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SPAWNERS = ("local", "sandbox", "kubernetes")


@dataclass(frozen=True)
class HubSettings:
    # Where the hub keeps its database, secrets, proxy token and pid files.
    state_dir: Path = Path("/var/lib/londonsde/hub")
    # Public (proxy) address researchers and the gateway use.
    public_ip: str = "127.0.0.1"
    public_port: int = 8000
    base_url: str = "/"
    # The hub's own API port; with the sandbox spawner it binds the bridge address so
    # sandboxes can reach it, otherwise `hub_ip`.
    hub_ip: str = "127.0.0.1"
    hub_port: int = 8081
    proxy_api_port: int = 8001
    chp_path: Path = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
    spawner: str = "sandbox"
    # Secrets shared with the gateway; created (mode 0600) when missing.
    gateway_token_file: Path | None = None
    ticket_secret_file: Path | None = None
    handover_secret_file: Path | None = None
    # Where the hub forwards outputs a workspace hands over (the gateway, as the hub reaches it).
    gateway_url: str = "http://127.0.0.1:5000"
    # Workspace environment and data.
    singleuser_prefix: Path = Path("/opt/londonsde/singleuser")
    extracts_root: Path = Path("/srv/londonsde/extracts")
    homes_root: Path = Path("/srv/londonsde/homes")
    notebooks_template: Path = REPO_ROOT / "notebooks_template"
    start_timeout: int = 60
    # Idle culling (jupyterhub-idle-culler as a hub service); 0 disables it.
    cull_idle_seconds: int = 3600
    cull_every_seconds: int = 300
    # Sandbox network and identities.
    bridge: str = "sdebr0"
    subnet: str = "10.213.0.0/24"
    # Per-sandbox passwd/group files the workspace uid reads (must be traversable by it).
    runtime_root: Path = Path("/run/londonsde/sandboxes")
    uid_base: int = 20000
    uid_count: int = 10000
    # When the hub stops, stop every workspace (and clean its namespaces) too.
    cleanup_servers: bool = True
    log_level: str = "INFO"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.state_dir / 'jupyterhub.sqlite'}"

    @property
    def cookie_secret_file(self) -> Path:
        return self.state_dir / "cookie-secret"

    @property
    def proxy_token_file(self) -> Path:
        return self.state_dir / "proxy-token"

    @property
    def gateway_token_path(self) -> Path:
        return self.gateway_token_file or self.state_dir / "gateway-token"

    @property
    def ticket_secret_path(self) -> Path:
        return self.ticket_secret_file or self.state_dir / "ticket-secret"

    @property
    def handover_secret_path(self) -> Path:
        return self.handover_secret_file or self.state_dir / "handover-secret"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_ip(self) -> str:
        """First host address of the subnet: the host end of the bridge (and the hub's API)."""
        return str(next(self.network.hosts()))

    def validate(self) -> HubSettings:
        if self.spawner not in SPAWNERS:
            raise ValueError(f"LONDONSDE_HUB_SPAWNER must be one of {SPAWNERS}, not {self.spawner!r}")
        if len(self.bridge) > 12:
            raise ValueError("bridge name must be at most 12 characters")
        if self.network.num_addresses < 8:
            raise ValueError("subnet too small")
        if not self.base_url.startswith("/"):
            raise ValueError("base_url must start with '/'")
        return self


def _coerce(kind: Any, raw: Any) -> Any:
    text = str(raw)
    if kind in (int, "int"):
        return int(text)
    if kind in (bool, "bool"):
        return text.strip().lower() in ("1", "true", "yes", "on")
    if "Path" in str(kind):
        return Path(text) if text else None
    return text


def load_settings(environ: dict[str, str] | None = None) -> HubSettings:
    """Defaults < JSON settings file < environment variables."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    settings_file = env.get("LONDONSDE_HUB_SETTINGS_FILE")
    if settings_file:
        values.update(json.loads(Path(settings_file).read_text()))
    for f in fields(HubSettings):
        key = f"LONDONSDE_HUB_{f.name.upper()}"
        if key in env:
            values[f.name] = env[key]
    known = {f.name: f.type for f in fields(HubSettings)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown hub settings: {sorted(unknown)}")
    return HubSettings(**{k: _coerce(known[k], v) for k, v in values.items()}).validate()


def read_or_create_secret(path: Path) -> str:
    """Return the secret in `path`, creating a random one (mode 0600) if the file is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()
