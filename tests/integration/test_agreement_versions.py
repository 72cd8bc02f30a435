"""A new version of the data access agreement binds the people already at work, not only later applicants.

Publishing it (on the web page or through the API) stops, in the same transaction, the running workspace of everyone
who has not accepted it (when it is published: everyone), as suspending a project or removing someone from its team
does; none of them can start a workspace again, or hand a file over from one, until they accept it. A workspace
starting while the version is published either is stopped by it or sees it and is refused; the worker's sweep stops
any workspace whose person has not accepted the current version, whatever let it through.

Service level with the real database: the workspace sessions are recorded by the gateway's own code
(``_session_for``, which open_workspace calls once the entitlement is checked); the real-hub test of the same is
tests/integration/workspaces/test_agreement_workspace.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.errors import ValidationError
from gateway.identity import tokens
from gateway.models import AuditEvent
from gateway.outbox import OutboxMessage
from gateway.outputs import handover
from gateway.workspaces import service as workspaces
from gateway.workspaces.entitlement import current_extract, entitlement, workspace_id
from gateway.workspaces.models import WorkspaceSession
from projects import agreements
from projects.models import Project
from tests.conftest import sign_in_session
from tests.integration.test_outputs import ready_project
from tests.support import factories as f
from tests.support.databases import postgres_only
from tests.support.forms import hidden_fields

NEW_TEXT = ("1. I will use the data only for the approved project.\n2. I will not copy any of it out of the "
            "workspace by any means, including photographs of the screen.\n")
NOT_ACCEPTED = "not accepted the current data access agreement"


@pytest.fixture
def world(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> dict[str, Any]:
    """researcher and dualrole on one active project with its extract, both having accepted version 1 (the
    researcher by submitting the application, dualrole on the agreement page)."""
    project_id = ready_project(session_factory, settings)
    with unit_of_work(session_factory) as s:
        version = agreements.current(s).version  # type: ignore[union-attr]
        agreements.accept(s, f.user(s, "dualrole"), version)
    with session_factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        people = {name: f.user(s, name).id for name in ("researcher", "dualrole")}
        return {"project_id": project_id, "people": people, "version": version, "server": workspace_id(project),
                "extract": current_extract(settings.extracts_root, project)}


def start(factory: sessionmaker[Session], world: dict[str, Any], who: str) -> int:
    """The session open_workspace records for this person, as it would once their entitlement is checked."""
    uid = world["people"][who]
    ws_id, _tier = workspaces._session_for(factory, uid, world["project_id"], world["server"], f"_u{uid}", "small",
                                           world["extract"])
    return ws_id


def publish(factory: sessionmaker[Session], text: str = NEW_TEXT) -> int:
    with unit_of_work(factory) as s:
        return agreements.publish(s, f.user(s, "admin"), text).version


def sessions(factory: sessionmaker[Session]) -> dict[int, WorkspaceSession]:
    with factory() as s:
        return {ws.id: ws for ws in s.scalars(select(WorkspaceSession))}


def stops_queued(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        return [m.payload for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "workspace.stop"))]


def refusal(factory: sessionmaker[Session], settings: Settings, world: dict[str, Any], who: str) -> list[str]:
    with factory() as s:
        project = s.get(Project, world["project_id"])
        assert project is not None
        return entitlement(s, f.user(s, who), project, settings.extracts_root).reasons


def test_publishing_a_new_version_stops_every_running_workspace_until_its_person_accepts_it(
        session_factory: sessionmaker[Session], settings: Settings, world: dict[str, Any]) -> None:
    running = {who: start(session_factory, world, who) for who in ("researcher", "dualrole")}
    assert all(ws.stopped_at is None for ws in sessions(session_factory).values())

    version = publish(session_factory)

    assert version == world["version"] + 1
    after = sessions(session_factory)
    for ws_id in running.values():
        assert after[ws_id].stopped_at is not None, "a workspace kept running after a new agreement version"
        assert f"data access agreement version {version}" in (after[ws_id].stop_reason or "")
    assert sorted(p["username"] for p in stops_queued(session_factory)) == sorted(
        f"_u{uid}" for uid in world["people"].values())
    with session_factory() as s:
        stopped = s.scalars(select(AuditEvent).where(AuditEvent.action == "workspace.stopped")).all()
        assert sorted(e.details["user"] for e in stopped) == ["dualrole", "researcher"]
        emails = [m.payload for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email"))
                  if m.payload["subject"] == f"New data access agreement (version {version})"]
        addresses = [f.user(s, n).email for n in ("dualrole", "researcher")]  # dualrole has none
        assert sorted(m["to"] for m in emails) == sorted(a for a in addresses if a) and emails
    # neither can start again, by the entitlement open_workspace checks or by the session it records
    for who in ("researcher", "dualrole"):
        assert any(NOT_ACCEPTED in r for r in refusal(session_factory, settings, world, who))
        with pytest.raises(workspaces.NotEntitled, match=NOT_ACCEPTED):
            workspaces.open_workspace(session_factory, settings, world["people"][who], world["project_id"])
        with pytest.raises(workspaces.NotEntitled, match=NOT_ACCEPTED):
            start(session_factory, world, who)
    # the researcher accepts the new version and may work again; dualrole has not and may not
    with unit_of_work(session_factory) as s:
        agreements.accept(s, f.user(s, "researcher"), version)
    assert refusal(session_factory, settings, world, "researcher") == []
    again = start(session_factory, world, "researcher")
    assert sessions(session_factory)[again].stopped_at is None
    with pytest.raises(workspaces.NotEntitled, match=NOT_ACCEPTED):
        start(session_factory, world, "dualrole")


def test_the_web_page_and_the_api_publish_alike(app: Flask, session_factory: sessionmaker[Session],
                                                world: dict[str, Any]) -> None:
    first = start(session_factory, world, "researcher")
    web = app.test_client()
    sign_in_session(web, session_factory, "admin")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      web.get("/agreement/publish").get_data(as_text=True))
    assert token is not None
    published = web.post("/agreement/publish", data={"csrf_token": token.group(1), "text": NEW_TEXT})
    assert published.status_code == 302, published.get_data(as_text=True)[:500]
    assert sessions(session_factory)[first].stopped_at is not None
    assert "every running workspace has been stopped" in web.get("/agreement/").get_data(as_text=True)  # the flash

    with unit_of_work(session_factory) as s:
        agreements.accept(s, f.user(s, "researcher"), agreements.current(s).version)  # type: ignore[union-attr]
    second = start(session_factory, world, "researcher")
    with unit_of_work(session_factory) as s:
        _, plain = tokens.create_token(s, "test", f.user(s, "admin"), "agreements", 30)
    api = app.test_client().post("/api/v1/agreement", headers={"Authorization": f"Bearer {plain}"},
                                 json={"text": NEW_TEXT + "3. A third term.\n"})
    assert api.status_code in (200, 201), api.get_json()
    assert sessions(session_factory)[second].stopped_at is not None


def test_the_api_route_refuses_to_start_a_workspace_until_the_new_version_is_accepted(
        app: Flask, session_factory: sessionmaker[Session], settings: Settings, world: dict[str, Any]) -> None:
    """The API's start (POST /projects/<id>/workspace) asks the same entitlement: 403, nothing recorded."""
    publish(session_factory)
    with unit_of_work(session_factory) as s:
        _, plain = tokens.create_token(s, "test", f.user(s, "researcher"), "workspace", 30)
    answer = app.test_client().post(f"/api/v1/projects/{world['project_id']}/workspace",
                                    headers={"Authorization": f"Bearer {plain}"})
    assert answer.status_code == 403 and NOT_ACCEPTED in answer.get_json()["detail"], answer.get_json()
    assert sessions(session_factory) == {}


def test_a_tab_showing_the_old_version_cannot_accept_it_for_the_new_one(app: Flask,
                                                                        session_factory: sessionmaker[Session],
                                                                        settings: Settings,
                                                                        world: dict[str, Any]) -> None:
    """The researcher's agreement page, read before the new version was published, still holds the old version's
    number: accepting from it (on the page or through the API) is refused and leaves them unable to work."""
    with unit_of_work(session_factory) as s:
        publish_first = agreements.publish(s, f.user(s, "admin"), NEW_TEXT)
        stale_version = publish_first.version
    web = app.test_client()
    sign_in_session(web, session_factory, "researcher")
    form = hidden_fields(web.get("/agreement/").get_data(as_text=True), "/agreement/accept")
    assert form["version"] == str(stale_version)
    newest = publish(session_factory, NEW_TEXT + "3. A third term.\n")  # published while the tab is open
    answer = web.post("/agreement/accept", data={**form, "accept": "y"}, follow_redirects=True)
    assert "A newer version of the agreement has been published" in answer.get_data(as_text=True)
    with unit_of_work(session_factory) as s:
        _, plain = tokens.create_token(s, "test", f.user(s, "researcher"), "agreements", 30)
    api = app.test_client().post("/api/v1/agreement/accept", headers={"Authorization": f"Bearer {plain}"},
                                 json={"version": stale_version})
    assert api.status_code == 422, api.get_json()
    with unit_of_work(session_factory) as s, pytest.raises(ValidationError):
        agreements.accept(s, f.user(s, "researcher"), world["version"])
    assert any(NOT_ACCEPTED in r for r in refusal(session_factory, settings, world, "researcher"))
    assert newest == stale_version + 1


def test_the_sweep_stops_a_workspace_whose_person_has_not_accepted_the_current_version(
        session_factory: sessionmaker[Session], world: dict[str, Any]) -> None:
    """Whatever let a session through (a start that raced the publication on a database without the lock, a session
    written by an older release), the worker's sweep, every pass, stops it."""
    version = publish(session_factory)
    with unit_of_work(session_factory) as s:
        late = WorkspaceSession(project_id=world["project_id"], user_id=world["people"]["dualrole"],
                                server_name=world["server"], hub_user=f"_u{world['people']['dualrole']}",
                                tier="small", extract_path=str(world["extract"]))
        accepted = WorkspaceSession(project_id=world["project_id"], user_id=world["people"]["researcher"],
                                    server_name=world["server"], hub_user=f"_u{world['people']['researcher']}",
                                    tier="small", extract_path=str(world["extract"]))
        agreements.accept(s, f.user(s, "researcher"), version)
        s.add_all([late, accepted])
    with unit_of_work(session_factory) as s:
        stopped = workspaces.sweep(s, f.TODAY)
    assert stopped == [late.id]
    assert f"data access agreement version {version}" in (sessions(session_factory)[late.id].stop_reason or "")
    assert sessions(session_factory)[accepted.id].stopped_at is None


def test_a_workspace_left_running_hands_nothing_over_until_its_person_accepts(
        app: Flask, session_factory: sessionmaker[Session], settings: Settings, world: dict[str, Any]) -> None:
    """A session still open without acceptance of the current version (as the sweep would find one) cannot hand a
    file over: the hand-over asks what the workspace may do now, not only whether its session is open."""
    from gateway.outputs import service as outputs

    settings.hub_state_dir.mkdir(parents=True, exist_ok=True)
    handover.secret_path(settings.hub_state_dir).write_text("s" * 48)
    version = publish(session_factory)
    uid = world["people"]["researcher"]
    with unit_of_work(session_factory) as s:
        ws = WorkspaceSession(project_id=world["project_id"], user_id=uid, server_name=world["server"],
                              hub_user=f"_u{uid}", tier="small", extract_path=str(world["extract"]))
        s.add(ws)
        request = outputs.create_request(s, f.user(s, "researcher"), s.get(Project, world["project_id"]), "Draft")
        s.flush()
        credential = handover.mint_credential(settings, ws.id, uid, world["project_id"])
        request_id = request.id
    headers = {handover.HUB_SECRET_HEADER: "s" * 48, handover.HUB_USER_HEADER: f"_u{uid}",
               handover.HUB_SERVER_HEADER: world["server"]}
    client = app.test_client()
    refused = client.post("/api/internal/workspace-handover/v1/drafts", json={"credential": credential},
                          headers=headers)
    assert refused.status_code == 403, refused.get_json()
    assert NOT_ACCEPTED in refused.get_json()["detail"]
    with unit_of_work(session_factory) as s:
        agreements.accept(s, f.user(s, "researcher"), version)
    listed = client.post("/api/internal/workspace-handover/v1/drafts", json={"credential": credential},
                         headers=headers)
    assert listed.status_code == 200 and [r["id"] for r in listed.get_json()["requests"]] == [request_id]


@postgres_only  # row locks: SQLite runs one writer at a time
def test_a_workspace_starting_while_a_new_version_is_published_is_refused(session_factory: sessionmaker[Session],
                                                                         world: dict[str, Any]) -> None:
    """The start checked the agreement before the publication committed; it records its session only under a lock
    the publication holds to its commit, so it waits, sees the new version and is refused. Without the lock the
    session was recorded after the publication had stopped every open one, and the server ran on."""
    def publish_uncommitted(publishing: Session) -> None:
        agreements.publish(publishing, f.user(publishing, "admin"), NEW_TEXT)

    _start_while(session_factory, world, publish_uncommitted, "the publication")


@postgres_only
def test_two_administrators_publishing_at_once_make_two_versions(session_factory: sessionmaker[Session],
                                                                 world: dict[str, Any]) -> None:
    """Each version number is taken under the lock on the newest version: the second publication waits and takes
    the next number (without it both read the same newest version and the second failed on the primary key)."""
    results: list[object] = []
    first = session_factory()
    with first.begin():
        agreements.publish(first, f.user(first, "admin"), NEW_TEXT)

        def second() -> None:
            try:
                results.append(publish(session_factory, NEW_TEXT + "3. Another.\n"))
            except Exception as exc:  # the failure is the finding
                results.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(1.5)
    first.close()
    thread.join(30)
    assert results == [world["version"] + 2], results


@postgres_only
def test_a_workspace_starting_while_the_project_is_suspended_is_refused(session_factory: sessionmaker[Session],
                                                                        world: dict[str, Any]) -> None:
    """The same race for the decisions that take the project away: the suspension writes the project's row, which
    the start locks; the start waits, then sees the project suspended (it read only the tier before, recorded its
    session after the suspension had stopped every open one, and the server ran in a suspended project until the
    worker's next sweep)."""
    from projects import lifecycle

    def suspend_uncommitted(suspending: Session) -> None:
        lifecycle.suspend(suspending, f.user(suspending, "admin"), suspending.get(Project, world["project_id"]),
                          "Investigation")
        suspending.flush()

    refused = _start_while(session_factory, world, suspend_uncommitted, "the suspension")
    assert "The project is suspended." in str(refused)


@postgres_only
def test_a_workspace_starting_while_its_person_is_removed_from_the_team_is_refused(
        session_factory: sessionmaker[Session], world: dict[str, Any]) -> None:
    """The same race for a removal by amendment: the start runs at the moment the removal has looked for the
    person's open workspaces (a subscriber after the one that stops them). The removal locks the project's row before
    it looks; without that the start saw them still on the team (the removal not committed), recorded its session,
    and the server ran until the worker's next sweep."""
    from projects import applications, dac, events

    with unit_of_work(session_factory) as s:
        lead = f.user(s, "researcher")
        amendment = applications.start_amendment(s, lead, s.get(Project, world["project_id"]))
        applications.remove_member(s, lead, amendment, world["people"]["dualrole"])
        applications.update_draft(s, lead, amendment, {"amendment_summary": "dualrole leaves."})
        amendment_id = amendment.id
    f.submit(session_factory, amendment_id)
    f.review_round(session_factory, amendment_id, {"laymember": "approve"})
    results: list[object] = []
    waited: list[bool] = []

    def starting() -> None:
        try:
            results.append(start(session_factory, world, "dualrole"))
        except workspaces.NotEntitled as exc:
            results.append(exc)

    def start_meanwhile(_session: Session, _event: events.MembersRemoved) -> None:
        thread = threading.Thread(target=starting)
        thread.start()
        thread.join(1.5)
        waited.append(thread.is_alive())
        threads.append(thread)

    threads: list[threading.Thread] = []
    events.SUBSCRIBERS.subscribe(events.MembersRemoved, start_meanwhile)
    try:
        with unit_of_work(session_factory) as s:
            from projects.models import Application

            dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                       conditions="", message="", access_end_date=None, today=f.TODAY)
    finally:
        events.SUBSCRIBERS.unsubscribe(events.MembersRemoved, start_meanwhile)
    threads[0].join(30)
    assert waited == [True], "the start did not wait for the removal"
    assert len(results) == 1 and isinstance(results[0], workspaces.NotEntitled), results
    assert "not on this project's team" in str(results[0])
    assert all(ws.stopped_at is not None for ws in sessions(session_factory).values())

def _start_while(factory: sessionmaker[Session], world: dict[str, Any], decide: Callable[[Session], None],
                 what: str) -> workspaces.NotEntitled:
    """A workspace start racing a decision held uncommitted: the start must wait for it, then be refused, and no
    session may stay open."""
    results: list[object] = []

    def starting() -> None:
        try:
            results.append(start(factory, world, "researcher"))
        except workspaces.NotEntitled as exc:
            results.append(exc)

    deciding = factory()
    with deciding.begin():
        decide(deciding)
        thread = threading.Thread(target=starting)
        thread.start()
        thread.join(1.5)
        assert thread.is_alive(), f"the start did not wait for {what}"
    deciding.close()
    thread.join(30)
    assert len(results) == 1 and isinstance(results[0], workspaces.NotEntitled), results
    assert all(ws.stopped_at is not None for ws in sessions(factory).values())
    return results[0]

