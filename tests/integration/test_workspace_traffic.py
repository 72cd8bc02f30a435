"""Bytes to the browser, as a workspace reports them through the hub (gateway/workspaces/traffic.py).

Called as the hub calls it (hub secret, hub names, workspace credential), on the real database: reports only add,
concurrent reports are all counted, the threshold event is recorded exactly once per session, bad numbers and
borrowed credentials are refused, and the totals are shown on the project page and to auditors only.
The full path from a real sandboxed server is in tests/integration/workspaces/test_browser_egress.py.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.models import AuditEvent
from gateway.workspaces import service as workspaces
from gateway.workspaces import traffic
from gateway.workspaces.models import WorkspaceSession
from tests.conftest import sign_in_session
from tests.integration.test_handover import call, world  # noqa: F401 (the fixture)

THRESHOLD = 50_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"workspaces": settings.workspaces.model_copy(
        update={"traffic_alert_bytes": THRESHOLD})})


def total(factory: sessionmaker[Session], session_id: int) -> tuple[int, Any]:
    with factory() as s:
        ws = s.get(WorkspaceSession, session_id)
        assert ws is not None
        return ws.bytes_to_browser, ws.traffic_alert_at


def alerts(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        return [e.details for e in s.scalars(select(AuditEvent).where(
            AuditEvent.action == traffic.THRESHOLD_EVENT).order_by(AuditEvent.seq))]


def report(client: Any, world: dict[str, Any], count: Any, who: str = "researcher", **kw: Any) -> Any:  # noqa: F811
    return call(client, "traffic", {"credential": world[who]["credential"], "bytes": count}, user=who, world=world,
                **kw)


def test_reports_add_up_and_the_threshold_is_recorded_once(client: Any, world: dict[str, Any],  # noqa: F811
                                                           session_factory: sessionmaker[Session]) -> None:
    ws = world["researcher"]["ws"]
    first = report(client, world, 1000)
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"session": ws, "bytes_to_browser": 1000}
    assert total(session_factory, ws) == (1000, None) and alerts(session_factory) == []
    assert report(client, world, THRESHOLD).get_json()["bytes_to_browser"] == THRESHOLD + 1000
    assert report(client, world, 5).status_code == 200
    count, alerted_at = total(session_factory, ws)
    assert count == THRESHOLD + 1005 and alerted_at is not None
    [event] = alerts(session_factory)
    assert event == {"workspace_session": ws, "server": world["server"], "bytes_to_browser": THRESHOLD + 1000,
                     "threshold": THRESHOLD}
    assert total(session_factory, world["dualrole"]["ws"]) == (0, None)  # the other account's session is untouched


def test_concurrent_reports_are_all_counted_and_alert_once(app: Flask, world: dict[str, Any],  # noqa: F811
                                                           session_factory: sessionmaker[Session]) -> None:
    errors: list[Any] = []

    def worker() -> None:
        client = app.test_client()
        for _ in range(10):
            response = report(client, world, 1000)
            if response.status_code != 200:
                errors.append(response.get_json())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert total(session_factory, world["researcher"]["ws"])[0] == 80_000
    assert len(alerts(session_factory)) == 1


def test_bad_reports_and_borrowed_credentials_are_refused(client: Any, world: dict[str, Any],  # noqa: F811
                                                          session_factory: sessionmaker[Session]) -> None:
    for bad in (-5, "100", 1.5, True, None, 2**40 * 100):
        response = report(client, world, bad)
        assert response.status_code == 422, (bad, response.get_json())
    a, b = world["researcher"], world["dualrole"]
    assert report(client, world, 10, secret=None).status_code == 401
    # A's credential presented for B's server (the hub names B), and B's credential with A's names
    assert call(client, "traffic", {"credential": a["credential"], "bytes": 10}, user="dualrole",
                world=world).status_code == 401
    assert call(client, "traffic", {"credential": b["credential"], "bytes": 10}, user="researcher",
                world=world).status_code == 401
    assert call(client, "traffic", {"bytes": 10}, world=world).status_code == 401
    assert total(session_factory, a["ws"]) == (0, None) and total(session_factory, b["ws"]) == (0, None)
    # the server's last report arrives as it stops: a stopped session still takes it
    with unit_of_work(session_factory) as s:
        workspaces.stop_session(s, s.get(WorkspaceSession, a["ws"]), "test")
    assert report(client, world, 77).status_code == 200
    assert total(session_factory, a["ws"])[0] == 77


def test_traffic_is_shown_to_members_and_auditors_only(app: Flask, world: dict[str, Any],  # noqa: F811
                                                       session_factory: sessionmaker[Session]) -> None:
    report(app.test_client(), world, 1_234_567)
    project_id = world["project_id"]
    seen: dict[str, tuple[int, bool]] = {}
    for who in ("researcher", "auditor", "admin", "researcher2"):
        client = app.test_client()
        sign_in_session(client, session_factory, who)
        page = client.get(f"/projects/{project_id}/sessions")
        seen[who] = (page.status_code, "Bytes to browser" in page.get_data(as_text=True))
        if who == "researcher":
            html = page.get_data(as_text=True)
            assert 'title="1234567 bytes">1.2 MB<' in html and "researcher" in html
    assert seen["researcher"] == (200, True) and seen["admin"] == (200, True)
    assert not seen["researcher2"][1]  # not a member: no project page (or no traffic on it)
    auditor = app.test_client()
    sign_in_session(auditor, session_factory, "auditor")
    page = auditor.get("/audit/workspace-sessions")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Bytes to browser" in html and "1.2 MB" in html and 'title="0 bytes"' in html  # both sessions listed
    researcher = app.test_client()
    sign_in_session(researcher, session_factory, "researcher")
    assert researcher.get("/audit/workspace-sessions").status_code == 403


def test_human_bytes() -> None:
    assert [traffic.human_bytes(n) for n in (0, 999, 1000, 1_234_567, 50 * 1024**2, 3 * 10**15)] == [
        "0 bytes", "999 bytes", "1.0 KB", "1.2 MB", "52.4 MB", "3000.0 TB"]
