"""What a workspace is: project id, extract, size tier. Shared by every spawner and renderer.

The gateway sends these as JupyterHub `user_options` when it spawns a server; the sandbox
spawner and the Kubernetes renderer both validate and translate them from here, so the size
tiers are defined once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A project id doubles as the JupyterHub server name and as part of Kubernetes object names,
# so keep it DNS-label-like and short.
PROJECT_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# Hub usernames as the gateway creates them (lower-case, no path or shell metacharacters).
CREDENTIAL_RE = re.compile(r"^h1\.[A-Za-z0-9_-]{1,400}\.[A-Za-z0-9_-]{20,100}$")
USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


@dataclass(frozen=True)
class SizeTier:
    name: str
    memory_bytes: int
    cpus: float
    max_pids: int
    description: str


GIB = 1024**3

TIERS: dict[str, SizeTier] = {
    "small": SizeTier("small", 2 * GIB, 1.0, 512, "2 GiB memory, 1 CPU"),
    "medium": SizeTier("medium", 8 * GIB, 2.0, 1024, "8 GiB memory, 2 CPUs"),
    "large": SizeTier("large", 32 * GIB, 4.0, 2048, "32 GiB memory, 4 CPUs"),
}
DEFAULT_TIER = "small"


class SpecError(ValueError):
    """The spawn options are not acceptable; the message is safe to show to an operator."""


@dataclass(frozen=True)
class WorkspaceSpec:
    """Validated spawn options. `extract` is a host path (sandbox) or a PVC name (Kubernetes)."""

    project_id: str
    extract: str
    tier: SizeTier
    # The workspace credential (gateway/outputs/handover.py): lets this server hand outputs over, and nothing else.
    handover_credential: str | None = None

    def to_user_options(self) -> dict[str, str]:
        """The JSON body the gateway posts when starting the named server."""
        options = {"project_id": self.project_id, "extract_path": self.extract, "tier": self.tier.name}
        if self.handover_credential:
            options["handover_credential"] = self.handover_credential
        return options

    def environment(self) -> dict[str, str]:
        """What every spawner puts in the server's environment for the hand-over extension."""
        return {"LONDONSDE_HANDOVER_CREDENTIAL": self.handover_credential} if self.handover_credential else {}


def check_project_id(project_id: object) -> str:
    if not isinstance(project_id, str) or not PROJECT_ID_RE.match(project_id):
        raise SpecError("project_id must be 1-32 lower-case letters, digits or '-'")
    return project_id


def check_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise SpecError("username must be lower-case letters, digits, '.', '_' or '-'")
    return username


def tier_named(name: object) -> SizeTier:
    if not isinstance(name, str) or name not in TIERS:
        raise SpecError(f"tier must be one of {sorted(TIERS)}")
    return TIERS[name]


def workspace_home(homes_root: str | Path, username: str, project_id: str) -> Path:
    """The researcher's private home for one project on the host (sandbox spawner layout)."""
    return Path(homes_root) / check_project_id(project_id) / check_username(username)


def spec_from_user_options(options: dict[str, Any], server_name: str) -> WorkspaceSpec:
    """Parse `user_options` as sent by the gateway. The server name must equal the project id."""
    unknown = set(options) - {"project_id", "extract_path", "tier", "handover_credential"}
    if unknown:
        raise SpecError(f"unknown options: {sorted(unknown)}")
    project_id = check_project_id(options.get("project_id"))
    if project_id != server_name:
        raise SpecError("server name must equal project_id")
    extract = options.get("extract_path")
    if not isinstance(extract, str) or not extract:
        raise SpecError("extract_path is required")
    credential = options.get("handover_credential")
    if credential is not None and (not isinstance(credential, str) or not CREDENTIAL_RE.match(credential)):
        raise SpecError("handover_credential is malformed")
    return WorkspaceSpec(project_id=project_id, extract=extract, tier=tier_named(options.get("tier", DEFAULT_TIER)),
                         handover_credential=credential)
