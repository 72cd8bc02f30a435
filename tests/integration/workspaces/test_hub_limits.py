"""What one workspace can make the hub do for it, against a real hub (plain local spawner).

A workspace reaches the hub's API port and holds its server's own hub token (every kernel has it in its
environment). With them it must not be able to keep another of its researcher's workspaces from being culled
(and metered) by reporting activity for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.workspaces.hub import HubClient
from gateway.workspaces.spec import TIERS, WorkspaceSpec
from gateway.workspaces.tickets import mint_ticket
from tests.integration.workspaces.workspace_client import Workspace, browser_login

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "infra" / "jupyterhub"))
from devhub import DevHub, default_singleuser_prefix

REASONS = []
if os.geteuid() != 0:
    REASONS.append("must run as root (servers run as a mapped uid)")
if not (default_singleuser_prefix() / "bin" / "jupyterhub-singleuser").exists():
    REASONS.append("single-user env missing: run infra/jupyterhub/build_singleuser_env.sh")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(REASONS), reason="; ".join(REASONS))]

USER = "_u7"
PROJECTS = ("p1", "p2")


@pytest.fixture(scope="module")
def hub() -> Iterator[DevHub]:
    with DevHub(spawner="local") as running:
        yield running


@pytest.fixture(scope="module")
def tokens(hub: DevHub) -> dict[str, str]:
    """Each running server's own hub API token, as a kernel in that workspace reads it from its environment."""
    client = HubClient(hub.url, hub.gateway_token)
    client.ensure_user(USER)
    found = {}
    for project in PROJECTS:
        extract = hub.make_extract(project, {"manifest.json": "{}"})
        client.start_server(USER, WorkspaceSpec(project, str(extract), TIERS["small"]))
        client.wait_until_ready(USER, project, timeout=60)
        session, response = browser_login(hub.url, mint_ticket(hub.ticket_secret, USER, project))
        assert response.status_code == 200, response.text[:300]
        workspace = Workspace(hub.url, session, USER, project)
        result = workspace.execute(workspace.start_kernel(),
                                   "import json, os; print(json.dumps(os.environ['JUPYTERHUB_API_TOKEN']))")
        assert result.error is None, result.error
        found[project] = result.json()
    return found


def hub_api(hub: DevHub) -> str:
    """The hub's own API port, the one address a sandbox can reach."""
    return f"http://127.0.0.1:{hub.hub_port}/hub/api"


def server_activity(hub: DevHub, project: str) -> datetime | None:
    status = HubClient(hub.url, hub.gateway_token).server_status(USER, project)
    assert status is not None
    return status.last_activity


def test_a_workspace_reports_activity_for_its_own_server_only(hub: DevHub, tokens: dict[str, str]) -> None:
    """Activity up to 59 minutes ahead is taken: a forged report would keep project B's server from being culled."""
    stamp = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0)
    report = {"last_activity": stamp.isoformat()}

    def post(token_of: str, servers: dict[str, Any], **kwargs: Any) -> requests.Response:
        return requests.post(f"{hub_api(hub)}/users/{USER}/activity", json={"servers": servers}, timeout=10,
                             headers={"Authorization": f"token {tokens[token_of]}"}, **kwargs)

    for servers in ({"p2": report}, {"p1": report, "p2": report}):
        forged = post("p1", servers)  # project A's workspace, for project B's server
        assert forged.status_code == 403, forged.text
        assert "for itself only" in forged.json()["message"]
    browser, _ = browser_login(hub.url, mint_ticket(hub.ticket_secret, USER, "p2"))  # the researcher's session
    by_browser = browser.post(f"{hub.url}/hub/api/users/{USER}/activity", json={"servers": {"p2": report}}, timeout=10,
                              headers={"Referer": f"{hub.url}/hub/home",
                                       "X-XSRFToken": browser.cookies.get("_xsrf", path="/hub/") or ""})
    assert by_browser.status_code == 403 and "for itself only" in by_browser.json()["message"], by_browser.text
    for project in PROJECTS:
        seen = server_activity(hub, project)
        assert seen is None or seen < stamp - timedelta(minutes=20), (project, seen)  # nothing was recorded

    own = post("p2", {"p2": report})  # a server's own report counts, as the single-user server sends it
    assert own.status_code == 200, own.text
    assert server_activity(hub, "p2") == stamp
