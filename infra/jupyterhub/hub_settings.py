"""Settings for the londonsde JupyterHub, from environment variables and an optional JSON file.

Every setting has an environment variable ``LONDONSDE_HUB_<NAME>`` (upper case). A JSON file
named by ``LONDONSDE_HUB_SETTINGS_FILE`` may hold the same names in lower case; environment
variables win over the file, and the file over the defaults below. See docs/workspaces.md.
"""

from __future__ import annotations

import fcntl
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
    # Browser egress (singleuser/londonsde_egress.py): the largest notebook or text file the contents API serves
    # or saves, and how often a server reports the bytes it sent to the browser.
    contents_max_bytes: int = 2 * 1024 * 1024
    traffic_report_seconds: int = 30
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
    # Every instance on this host records its uid range, bridge, subnet and ports here, so a second one cannot
    # take the first one's (see claim_host_resources).
    host_registry: Path = Path("/var/lib/londonsde/instances.json")

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
        if len({self.public_port, self.hub_port, self.proxy_api_port}) != 3:
            raise ValueError("public_port, hub_port and proxy_api_port must differ")
        if self.contents_max_bytes < 1024 or self.traffic_report_seconds < 1:
            raise ValueError("contents_max_bytes must be at least 1024 and traffic_report_seconds at least 1")
        if self.uid_base < 1000 or self.uid_count < 1 or self.uid_base + self.uid_count > 2**31:
            raise ValueError("uid range must lie between 1000 and 2^31")
        return self

    def host_claim(self) -> dict[str, Any]:
        """What this instance holds on the host, as recorded in the host registry."""
        return {"uids": [self.uid_base, self.uid_base + self.uid_count], "bridge": self.bridge,
                "subnet": self.subnet, "ports": sorted({self.public_port, self.hub_port, self.proxy_api_port})}


class HostConflict(ValueError):
    """Another instance on this host holds a resource this one is configured to use."""


def conflicts(mine: dict[str, Any], other: dict[str, Any]) -> list[str]:
    found = []
    (a0, a1), (b0, b1) = mine["uids"], other["uids"]
    if a0 < b1 and b0 < a1:
        found.append(f"uids {a0}-{a1 - 1} overlap {b0}-{b1 - 1}")
    if mine["bridge"] == other["bridge"]:
        found.append(f"bridge {mine['bridge']}")
    if ipaddress.IPv4Network(mine["subnet"]).overlaps(ipaddress.IPv4Network(other["subnet"])):
        found.append(f"subnet {mine['subnet']} overlaps {other['subnet']}")
    shared_ports = sorted(set(mine["ports"]) & set(other["ports"]))
    if shared_ports:
        found.append(f"ports {shared_ports}")
    return found


def claim_host_resources(settings: HubSettings) -> None:
    """Record this instance's uid range, bridge, subnet and ports, refusing any another instance holds.

    Instances are keyed by their state folder; one whose state folder is gone is forgotten. The uid range stays
    claimed while the instance exists, stopped or not: its homes belong to those uids.
    """
    registry = settings.host_registry
    registry.parent.mkdir(parents=True, exist_ok=True)
    me = str(settings.state_dir.resolve())
    with open(registry.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table: dict[str, dict[str, Any]] = json.loads(registry.read_text()) if registry.exists() else {}
        table = {state: claim for state, claim in table.items() if Path(state).is_dir()}
        mine = settings.host_claim()
        problems = [f"{what} (instance {state})" for state, claim in table.items() if state != me
                    for what in conflicts(mine, claim)]
        if problems:
            raise HostConflict("another londonsde instance on this host uses: " + "; ".join(problems)
                               + ". Give this one its own uid_base, bridge, subnet and ports.")
        table[me] = mine
        temporary = registry.with_suffix(".tmp")
        temporary.write_text(json.dumps(table, indent=1, sort_keys=True))
        temporary.replace(registry)


def release_host_claim(registry: Path, state_dir: Path) -> None:
    """Forget the claim of the instance kept in ``state_dir`` (a throw-away hub that is done, or whose owner died):
    its ports, bridge, subnet and uids are free for the next instance. Safe to repeat."""
    if not registry.exists():
        return
    me = str(state_dir.resolve())
    with open(registry.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table: dict[str, dict[str, Any]] = json.loads(registry.read_text()) if registry.exists() else {}
        if table.pop(me, None) is None:
            return
        temporary = registry.with_suffix(".tmp")
        temporary.write_text(json.dumps(table, indent=1, sort_keys=True))
        temporary.replace(registry)


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
