"""What a workspace is: project id, extract, size tier, security tier. Shared by every spawner and renderer.

The gateway sends these as JupyterHub `user_options` when it spawns a server; the sandbox
spawner and the Kubernetes renderer both validate and translate them from here, so the size
tiers are defined once.
"""

from __future__ import annotations

import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projects.workspace_tiers import (  # noqa: F401 - the tier definitions, read from here by every spawner
    DEFAULT_SECURITY_TIER,
    DEFAULT_TIER,
    GIB,
    SECURITY_TIER_LABELS,
    SECURITY_TIERS,
    TIERS,
    SizeTier,
)

# A project id doubles as the JupyterHub server name and as part of Kubernetes object names,
# so keep it DNS-label-like and short.
PROJECT_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# Hub usernames as the gateway creates them from release 0014 on: `_u<gateway user id>`. The leading '_' is what no
# earlier hub name could have (LEGACY_USERNAME_RE), so an id-derived name never meets a home, uid or server that an
# account called, say, "u7" made before the upgrade.
HUB_USER_RE = re.compile(r"^_u[1-9][0-9]{0,14}$")
# Hub names before 0014 (the username when it fitted, else user-<id>); servers and homes made then keep them.
LEGACY_USERNAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
# What the hub and the spawners accept: either form, and never a path or shell metacharacter.
USERNAME_RE = re.compile(rf"{HUB_USER_RE.pattern}|{LEGACY_USERNAME_RE.pattern}")
# The workspace's output hand-over credential (gateway/outputs/handover.py), as the spawners accept it.
CREDENTIAL_RE = re.compile(r"^h1\.[A-Za-z0-9_-]{1,400}\.[A-Za-z0-9_-]{20,100}$")


SECURITY_TIER_ENV = "LONDONSDE_SECURITY_TIER"
# How many characters one paste may carry in the high tier (the gateway's workspaces.high_tier_paste_limit).
PASTE_LIMIT_ENV = "LONDONSDE_PASTE_LIMIT"
DEFAULT_PASTE_LIMIT = 2000
MAX_PASTE_LIMIT = 1_000_000


log = logging.getLogger(__name__)


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
    # A hub name of this person from before 0014 whose home for this project the spawner should adopt, if any.
    legacy_home: str | None = None
    security_tier: str = DEFAULT_SECURITY_TIER
    paste_limit: int = DEFAULT_PASTE_LIMIT

    def __post_init__(self) -> None:
        check_security_tier(self.security_tier)
        check_paste_limit(self.paste_limit)

    def to_user_options(self) -> dict[str, Any]:
        """The JSON body the gateway posts when starting the named server."""
        options = {"project_id": self.project_id, "extract_path": self.extract, "tier": self.tier.name,
                   "security_tier": self.security_tier, "paste_limit": self.paste_limit}
        if self.handover_credential:
            options["handover_credential"] = self.handover_credential
        if self.legacy_home:
            options["legacy_home"] = self.legacy_home
        return options

    def environment(self) -> dict[str, str]:
        """What every spawner puts in the server's environment: the security tier, and the hand-over credential."""
        env = {SECURITY_TIER_ENV: self.security_tier, PASTE_LIMIT_ENV: str(self.paste_limit)}
        if self.handover_credential:
            env["LONDONSDE_HANDOVER_CREDENTIAL"] = self.handover_credential
        return env


def check_project_id(project_id: object) -> str:
    if not isinstance(project_id, str) or not PROJECT_ID_RE.match(project_id):
        raise SpecError("project_id must be 1-32 lower-case letters, digits or '-'")
    return project_id


def check_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise SpecError("username must be _u<id>, or lower-case letters, digits, '.', '_' or '-'")
    return username


def tier_named(name: object) -> SizeTier:
    if not isinstance(name, str) or name not in TIERS:
        raise SpecError(f"tier must be one of {sorted(TIERS)}")
    return TIERS[name]


def check_security_tier(name: object) -> str:
    if not isinstance(name, str) or name not in SECURITY_TIERS:
        raise SpecError(f"security_tier must be one of {list(SECURITY_TIERS)}")
    return name


def check_paste_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_PASTE_LIMIT:
        raise SpecError(f"paste_limit must be a whole number from 0 to {MAX_PASTE_LIMIT}")
    return limit


def workspace_home(homes_root: str | Path, username: str, project_id: str) -> Path:
    """The researcher's private home for one project on the host (sandbox spawner layout)."""
    return Path(homes_root) / check_project_id(project_id) / check_username(username)


# Where a workspace opens: the welcome notebook of notebooks_template/, seeded into every new home.
WELCOME_NOTEBOOK = "welcome.ipynb"
WELCOME_URL = f"/lab/tree/{WELCOME_NOTEBOOK}"
TEAM_FOLDER = ".team"  # no hub username starts with '.', so the team folder is never a person's home


def team_folder(homes_root: str | Path, project_id: str) -> Path:
    """The project's team folder on the host (sandbox spawner layout), beside its members' homes."""
    return Path(homes_root) / check_project_id(project_id) / TEAM_FOLDER


def spec_from_user_options(options: dict[str, Any], server_name: str) -> WorkspaceSpec:
    """Parse `user_options` as sent by the gateway. The server name must equal the project id."""
    unknown = set(options) - {"project_id", "extract_path", "tier", "handover_credential", "legacy_home",
                              "security_tier", "paste_limit"}
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
    legacy = options.get("legacy_home")
    if legacy is not None and (not isinstance(legacy, str) or not LEGACY_USERNAME_RE.match(legacy)):
        raise SpecError("legacy_home must be a hub name of the earlier scheme")
    # Absent (a gateway from before 0016): standard, as every project was then. Anything else must be a known tier.
    security_tier = check_security_tier(options.get("security_tier", DEFAULT_SECURITY_TIER))
    return WorkspaceSpec(project_id=project_id, extract=extract, tier=tier_named(options.get("tier", DEFAULT_TIER)),
                         handover_credential=credential, legacy_home=legacy, security_tier=security_tier,
                         paste_limit=check_paste_limit(options.get("paste_limit", DEFAULT_PASTE_LIMIT)))


def adopt_legacy_home(homes_root: Path, legacy: str, username: str, project_id: str, shared: bool) -> bool:
    """Move a home made under the pre-0014 name to the id-based name, once; True if moved.

    Run by the spawner as root on the host (the gateway never touches homes): the gateway names the old hub name
    in `legacy_home` only when no other account had it. A home whose old name two accounts shared is left where
    it is for an operator to sort out (logged): it cannot be told whose work it holds. The spawner then gives the
    moved home to the new uid. The rename moves the folder entry itself and follows no link.
    """
    if legacy == username:
        return False
    old, new = workspace_home(homes_root, legacy, project_id), workspace_home(homes_root, username, project_id)
    try:
        if not stat.S_ISDIR(old.lstat().st_mode) or new.exists() or new.is_symlink():
            return False
    except FileNotFoundError:
        return False
    if shared:
        log.warning("not moving home %s to %s: two accounts had the hub name %r", old, new, legacy)
        return False
    try:
        old.rename(new)
    except OSError as exc:
        log.warning("could not move home %s to %s: %s", old, new, exc)
        return False
    log.info("moved home %s to %s", old, new)
    return True
