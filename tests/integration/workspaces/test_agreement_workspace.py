"""A new version of the data access agreement, against a real sandboxed workspace started by the gateway through the
real hub.

The researcher works in their workspace; an administrator publishes a new version; the worker's next pass stops the
server on the hub (the researcher's open browser reaches nothing), the gateway refuses to start it again and takes
no hand-over with its old credential, until the researcher accepts the new version; then it starts again.

And the race the gateway cannot close with a lock: the version is published, and the worker delivers the stop, while
the server is still starting (the hub has no server to stop yet). The gateway looks again once the server is ready,
stops it, and sends nobody to it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.outputs import handover
from gateway.worker import run_once
from gateway.workspaces import service as workspaces
from gateway.workspaces.hub import HubClient
from gateway.workspaces.models import WorkspaceSession
from projects import agreements
from tests.integration.workspaces.live_gateway import gateway_beside_a_sandbox_hub
from tests.integration.workspaces.workspace_client import Workspace, browser_login
from tests.support import factories as f

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

from devhub import default_singleuser_prefix, missing_facilities  # noqa: E402

MISSING = missing_facilities(default_singleuser_prefix())
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason="sandbox needs: " + "; ".join(MISSING))]
NEW_TEXT = "1. I will use the data only for the approved project.\n2. I will not photograph the screen.\n"


@pytest.fixture
def backend() -> str:
    from tests.support.databases import backends

    return backends()[-1]


@pytest.fixture
def running(settings: Settings, demo_users: dict[str, int]) -> Iterator[dict[str, Any]]:
    with gateway_beside_a_sandbox_hub(settings) as world:
        yield {**world, "client": HubClient(world["hub"].url, world["hub"].gateway_token)}


def open_as_researcher(running: dict[str, Any]) -> Workspace:
    login = workspaces.open_workspace(running["factory"], running["settings"], running["uid"], running["project_id"])
    session, response = browser_login(running["hub"].url, login.split("auth_ticket=")[1])
    assert response.status_code == 200, response.text[:300]
    return Workspace(running["hub"].url, session, running["hub_user"], running["server_name"])


def publish(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as s:
        return agreements.publish(s, f.user(s, "admin"), NEW_TEXT).version


def server_runs(running: dict[str, Any]) -> bool:
    status = running["client"].server_status(running["hub_user"], running["server_name"])
    return status is not None and (status.ready or status.pending is not None)


def open_session_id(factory: sessionmaker[Session]) -> int | None:
    with factory() as s:
        return next((ws.id for ws in workspaces.open_sessions(s)), None)


def test_publishing_stops_the_running_workspace_until_the_researcher_accepts(running: dict[str, Any]) -> None:
    factory, settings = running["factory"], running["settings"]
    ws = open_as_researcher(running)
    kernel = ws.start_kernel()
    assert ws.execute(kernel, "print(6 * 7)").stdout.strip() == "42"
    session_id = open_session_id(factory)
    assert session_id is not None and server_runs(running)

    version = publish(factory)
    run_once(settings, factory)  # the worker's next pass: the queued stop reaches the hub

    assert not server_runs(running), "the workspace kept running after a new agreement version"
    assert ws.api("GET", "/api/kernels").status_code != 200  # the researcher's open browser reaches nothing
    with pytest.raises(workspaces.NotEntitled, match="not accepted the current data access agreement"):
        workspaces.open_workspace(factory, settings, running["uid"], running["project_id"])
    assert not server_runs(running)
    credential = handover.mint_credential(settings, session_id, running["uid"], running["project_id"])
    with factory() as s, pytest.raises(handover.CredentialError, match="session has ended"):
        handover.context_for(s, settings, credential, running["hub_user"], running["server_name"])

    with unit_of_work(factory) as s:
        agreements.accept(s, f.user(s, "researcher"), version)
    ws = open_as_researcher(running)
    kernel = ws.start_kernel()
    assert ws.execute(kernel, "print(6 * 7)").stdout.strip() == "42"
    new_session = open_session_id(factory)
    assert new_session is not None and new_session != session_id
    with factory() as s:  # the new session hands over again
        credential = handover.mint_credential(settings, new_session, running["uid"], running["project_id"])
        assert handover.context_for(s, settings, credential, running["hub_user"], running["server_name"]).user


def test_a_version_published_while_the_server_starts_leaves_nothing_running(running: dict[str, Any],
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The session is recorded, then (before the hub has the server) the version is published and the worker
    delivers the stop to a hub with nothing to stop; the server then starts. Without the second look the gateway
    handed the researcher a sign-in link to a server that ran on with its session closed."""
    factory, settings = running["factory"], running["settings"]
    real_start = HubClient.start_server

    def start_after_the_publication(self: HubClient, username: str, spec: Any) -> Any:
        publish(factory)
        run_once(settings, factory)  # the stop is delivered now, before the server exists
        return real_start(self, username, spec)

    monkeypatch.setattr(HubClient, "start_server", start_after_the_publication)
    with pytest.raises(workspaces.NotEntitled, match="stopped while it started"):
        workspaces.open_workspace(factory, settings, running["uid"], running["project_id"])
    monkeypatch.undo()
    assert not server_runs(running), "a server ran on after its session was closed"
    with factory() as s:
        ended = s.query(WorkspaceSession).one()
        assert ended.stopped_at is not None and "agreement" in (ended.stop_reason or "")
    with factory() as s, pytest.raises(handover.CredentialError, match="session has ended"):
        handover.context_for(s, settings, handover.mint_credential(settings, ended.id, running["uid"],
                                                                   running["project_id"]),
                             running["hub_user"], running["server_name"])
