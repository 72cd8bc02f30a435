"""The project's security tier inside the workspace (a jupyter_server extension, installed into the single-user env).

The spawner sets LONDONSDE_SECURITY_TIER from the project (gateway.workspaces.spec.WorkspaceSpec.environment()).
- jupyter_server_config.py calls `terminals_enabled()` to turn terminals off in the high tier;
- this extension puts the tier and the paste limit into JupyterLab's page config, where the front-end extension
  @londonsde/security-tier (src/index.js beside this file) reads them;
- and, in the high tier, refuses to run a server that has terminals on after all (a mistaken setting).

Fail closed: only the exact value "standard" gives the standard tier; a missing or unknown value is "high".
The tier is read once, when the server starts: a running server keeps its tier until it is restarted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

TIER_ENV = "LONDONSDE_SECURITY_TIER"
PASTE_LIMIT_ENV = "LONDONSDE_PASTE_LIMIT"
DEFAULT_PASTE_LIMIT = 2000
MAX_PASTE_LIMIT = 1_000_000
# The page-config keys the front-end extension reads.
PAGE_TIER_KEY = "londonsdeSecurityTier"
PAGE_PASTE_LIMIT_KEY = "londonsdePasteLimit"


def security_tier(environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(TIER_ENV, "")
    return "standard" if value == "standard" else "high"


def paste_limit(environ: Mapping[str, str] | None = None) -> int:
    """How many characters one paste may carry in the high tier (the operator's setting, else 2,000)."""
    raw = (os.environ if environ is None else environ).get(PASTE_LIMIT_ENV, "")
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_PASTE_LIMIT
    return value if 0 <= value <= MAX_PASTE_LIMIT else DEFAULT_PASTE_LIMIT


def terminals_enabled(environ: Mapping[str, str] | None = None) -> bool:
    return security_tier(environ) == "standard"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "londonsde_security_tier"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    tier = security_tier()
    if tier != "standard" and serverapp.terminals_enabled:
        # jupyter_server_config.py turns them off; a setting that turned them back on must not start a server.
        serverapp.log.critical("londonsde: terminals are on in a high security tier workspace; stopping")
        raise SystemExit(3)
    page = serverapp.web_app.settings.setdefault("page_config_data", {})
    page[PAGE_TIER_KEY] = tier
    page[PAGE_PASTE_LIMIT_KEY] = paste_limit()
    serverapp.log.info("londonsde: security tier %s", tier)
