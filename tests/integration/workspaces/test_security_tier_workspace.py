"""The security tier in a real sandboxed workspace, started by the gateway through the real hub (issue 13).

One project, one researcher: in the standard tier the server has terminals; an administrator raises the project to
the high tier, which stops the running server; opened again, the server runs in the high tier: no terminal can be
listed, opened or reached, JupyterLab's page config carries the tier for the front-end extension, and the kernel
sees LONDONSDE_SECURITY_TIER=high. A researcher who writes a user setting turning terminals back on, then restarts,
gets no terminal either.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.app import create_app
from gateway.config import Settings, WorkspaceSettings
from gateway.db import unit_of_work
from gateway.worker import run_once
from gateway.workspaces import service as workspaces
from gateway.workspaces.entitlement import workspace_id
from gateway.workspaces.hub import HubClient
from projects import lifecycle
from projects.models import Project
from tests.integration.test_outputs import ready_project
from tests.integration.workspaces.workspace_client import Workspace, browser_login
from tests.support import factories as f
from tests.support.browser import LiveServer, free_port

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import DevHub, default_singleuser_prefix, missing_facilities  # noqa: E402

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING))]


@pytest.fixture
def backend() -> str:
    from tests.support.databases import backends

    return backends()[-1]


@pytest.fixture
def running(settings: Settings, demo_users: dict[str, int]) -> Iterator[dict[str, Any]]:
    port = free_port()
    with DevHub(spawner="sandbox", extra_env={"LONDONSDE_HUB_GATEWAY_URL": f"http://127.0.0.1:{port}"}) as hub:
        live = settings.model_copy(update={"workspaces": WorkspaceSettings(
            hub_url=hub.url, hub_state_dir=hub.state_dir, extracts_root=hub.extracts_root,
            homes_root=hub.homes_root, high_tier_paste_limit=750)})
        app = create_app(live)
        server = LiveServer(app, port=port).start()
        factory: sessionmaker[Session] = app.extensions["sde_sessionmaker"]
        project_id = ready_project(factory, live)
        for path in (hub.extracts_root, *hub.extracts_root.rglob("*")):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        with factory() as s:
            uid, server_name = f.user(s, "researcher").id, workspace_id(s.get(Project, project_id))
            hub_user = workspaces.hub_username(f.user(s, "researcher"))
        try:
            yield {"hub": hub, "settings": live, "factory": factory, "project_id": project_id, "uid": uid,
                   "server_name": server_name, "hub_user": hub_user}
        finally:
            server.stop()
            app.extensions["sde_engine"].dispose()


def open_as_researcher(running: dict[str, Any]) -> Workspace:
    login = workspaces.open_workspace(running["factory"], running["settings"], running["uid"], running["project_id"])
    session, response = browser_login(running["hub"].url, login.split("auth_ticket=")[1])
    assert response.status_code == 200, response.text[:300]
    return Workspace(running["hub"].url, session, running["hub_user"], running["server_name"])


def page_config(ws: Workspace) -> dict[str, Any]:
    html = ws.api("GET", "/lab").text
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, html[:300]
    return dict(json.loads(match.group(1)))


def stop_everything(running: dict[str, Any]) -> None:
    """The worker stops the servers whose sessions the gateway closed; wait until the hub has none."""
    run_once(running["settings"], running["factory"])
    client = HubClient(running["hub"].url, running["hub"].gateway_token)
    client.stop_server(running["hub_user"], running["server_name"])
    assert client.server_status(running["hub_user"], running["server_name"]) is None


def test_high_tier_workspace_has_no_terminals_and_tells_jupyterlab(running: dict[str, Any]) -> None:
    # standard: terminals work, and the page config says standard
    ws = open_as_researcher(running)
    assert ws.api("GET", "/api/terminals").status_code == 200
    made = ws.api("POST", "/api/terminals")
    assert made.status_code == 200, made.text
    assert ws.api("DELETE", f"/api/terminals/{made.json()['name']}").status_code == 204
    config = page_config(ws)
    assert config["londonsdeSecurityTier"] == "standard" and config["terminalsAvailable"] is True

    # the administrator raises the tier: the running server is stopped, and the next start is high
    with unit_of_work(running["factory"]) as s:
        lifecycle.raise_security_tier(s, f.user(s, "admin"), s.get(Project, running["project_id"]),
                                      "Linked to a rare-disease registry")
    stop_everything(running)
    ws = open_as_researcher(running)
    for method, path in (("GET", "/api/terminals"), ("POST", "/api/terminals"), ("GET", "/api/terminals/1"),
                         ("DELETE", "/api/terminals/1"), ("GET", "/terminals/1"), ("GET", "/terminals/websocket/1")):
        status = ws.api(method, path).status_code
        assert status in (403, 404), f"{method} {path} answered {status}"
    config = page_config(ws)
    assert config["londonsdeSecurityTier"] == "high" and config["terminalsAvailable"] is False
    assert config["londonsdePasteLimit"] == 750  # the gateway's setting, through the spec and the environment
    # the JupyterLab extension is installed and enabled in the workspace's JupyterLab
    extensions = {e["name"] for e in config["federated_extensions"]}
    assert "@londonsde/security-tier" in extensions
    assert "@londonsde/security-tier" not in json.dumps(config.get("disabledExtensions", {}))
    kernel = ws.start_kernel()
    seen = ws.execute(kernel, "import os; print(os.environ.get('LONDONSDE_SECURITY_TIER'))")
    assert seen.stdout.strip() == "high", seen

    # the researcher turns terminals back on in their own Jupyter settings (and turns the tier extension off),
    # then restarts the workspace: still no terminal
    attack = ws.execute(kernel, (
        "import json, os\n"
        "d = os.path.expanduser('~/.jupyter'); os.makedirs(d, exist_ok=True)\n"
        "cfg = {'ServerApp': {'terminals_enabled': True,\n"
        "       'jpserver_extensions': {'londonsde_security_tier': False, 'londonsde_lockdown': False}}}\n"
        "json.dump(cfg, open(os.path.join(d, 'jupyter_server_config.json'), 'w'))\n"
        "open(os.path.join(d, 'jupyter_server_config.py'), 'w').write(\n"
        "    'c.ServerApp.terminals_enabled = True\\n')\n"
        "print('written')"))
    assert attack.stdout.strip() == "written", attack
    with unit_of_work(running["factory"]) as s:
        for session in workspaces.open_sessions(s, s.get(Project, running["project_id"])):
            workspaces.stop_session(s, session, "restart")
    stop_everything(running)
    ws = open_as_researcher(running)
    assert ws.api("GET", "/api/terminals").status_code in (403, 404)
    assert ws.api("POST", "/api/terminals").status_code in (403, 404)
    config = page_config(ws)
    assert config["londonsdeSecurityTier"] == "high" and config["terminalsAvailable"] is False
