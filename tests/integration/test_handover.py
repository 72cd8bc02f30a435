"""The gateway's door for outputs a workspace hands over, called as the hub calls it: the hub<->gateway secret,
the hub's names for the user and server, and the workspace credential. Every way in that is not exactly "this
person's open workspace session, their own draft request on this project" is refused, and a refused file leaves
nothing behind but an audit event. An audit hook proves the gateway opens nothing under the homes folder."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.models import AuditEvent
from gateway.outputs import handover, service
from gateway.outputs.models import OutputRequest
from gateway.workspaces import service as workspaces
from gateway.workspaces.entitlement import current_extract, workspace_id
from gateway.workspaces.models import WorkspaceSession
from projects import agreements
from projects.models import Project
from tests.integration.test_outputs import cohort, ready_project
from tests.support import factories as f

URL = "/api/internal/workspace-handover/v1"
SECRET = "s" * 48


class HomesWatch:
    """Records every file the process opens under the homes folder while armed (a sys audit hook)."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.opened: list[str] = []
        self.local = threading.local()
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.root and event == "open" and args and isinstance(args[0], str | bytes | Path):
            path = str(args[0], "utf-8", "replace") if isinstance(args[0], bytes) else str(args[0])
            if path.startswith(self.root):
                self.opened.append(path)


WATCH = HomesWatch()


@pytest.fixture
def world(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> dict[str, Any]:
    """researcher (A) and dualrole (B) on the same project, each with an open workspace session and a draft."""
    project_id = ready_project(session_factory, settings)
    with unit_of_work(session_factory) as s:  # as anyone who opens a workspace has (the researcher did on submitting)
        agreements.accept(s, f.user(s, "dualrole"), agreements.current(s).version)  # type: ignore[union-attr]
    settings.hub_state_dir.mkdir(parents=True, exist_ok=True)
    handover.secret_path(settings.hub_state_dir).write_text(SECRET)
    out: dict[str, Any] = {"project_id": project_id}
    with session_factory() as s:
        project = s.get(Project, project_id)
        extract = current_extract(settings.extracts_root, project)
        server = workspace_id(project)
    for who in ("researcher", "dualrole"):
        with session_factory() as s:
            uid, hub_user = f.user(s, who).id, workspaces.hub_username(f.user(s, who))
        ws, _tier = workspaces._session_for(session_factory, uid, project_id, server, hub_user, "small", extract)
        with unit_of_work(session_factory) as s:
            actor = f.user(s, who)
            request = service.create_request(s, actor, s.get(Project, project_id), f"Draft of {who}")
            group = service.save_group(s, actor, request, "Tables", "Counts by region.", "Cells under 10 suppressed.")
            out[who] = {"uid": uid, "hub_user": hub_user, "ws": ws, "request": request.id, "group": group.id,
                        "credential": handover.mint_credential(settings, ws, uid, project_id)}
    out["server"] = server
    WATCH.root, WATCH.opened = str(settings.homes_root), []
    return out


def call(client: Any, op: str, body: dict[str, Any], user: str = "researcher", server: str | None = None,
         secret: str | None = SECRET, world: dict[str, Any] | None = None, **headers: str) -> Any:
    hub_user = (world or {}).get(user, {}).get("hub_user", user)  # the account's id-based hub name
    sent = {"X-Londonsde-Hub-User": hub_user, "X-Londonsde-Hub-Server": server or (world or {}).get("server", "")}
    if secret is not None:
        sent["X-Londonsde-Hub-Secret"] = secret
    return client.post(f"{URL}/{op}", json=body, headers={**sent, **headers})


def file_body(w: dict[str, Any], who: str, name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"credential": w[who]["credential"], "request_id": w[who]["request"], "group_id": w[who]["group"],
            "kind": "output", "name": name, "data": base64.b64encode(data).decode(), **extra}


def files_of(factory: sessionmaker[Session], request_id: int) -> list[str]:
    with factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        return [f"{item.path}@{item.version}" for item in request.files]


def test_a_workspace_lists_its_drafts_and_hands_a_file_over(client: Any, world: dict[str, Any],
                                                            session_factory: sessionmaker[Session]) -> None:
    listed = call(client, "drafts", {"credential": world["researcher"]["credential"]}, world=world)
    assert listed.status_code == 200, listed.json
    assert [r["id"] for r in listed.json["requests"]] == [world["researcher"]["request"]]  # only their own
    sent = call(client, "files", file_body(world, "researcher", "tables/by_region.csv", b"region,n\nNorth,40\n"),
                world=world)
    assert sent.status_code == 201, sent.json
    assert sent.json["name"] == "tables/by_region.csv" and sent.json["version"] == 1
    again = call(client, "files", file_body(world, "researcher", "tables/by_region.csv", b"region,n\nNorth,45\n"),
                 world=world)
    assert again.json["version"] == 2
    assert files_of(session_factory, world["researcher"]["request"]) == ["tables/by_region.csv@2"]
    assert WATCH.opened == []
    probe = Path(WATCH.root or "") / "probe.txt"  # the watch itself works: an open under homes is seen
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("x")
    assert WATCH.opened == [str(probe)]


def test_every_other_way_in_is_refused(client: Any, world: dict[str, Any], settings: Settings,
                                       session_factory: sessionmaker[Session]) -> None:
    good = file_body(world, "researcher", "t.csv", b"region,n\nNorth,40\n")
    a, b = world["researcher"], world["dualrole"]
    forged = a["credential"].split(".")
    payload = json.loads(base64.urlsafe_b64decode(forged[1] + "=="))
    payload["u"] = b["uid"]
    forged[1] = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    cases = {
        "no hub secret": (call(client, "files", good, secret=None, world=world), 401),
        "wrong hub secret": (call(client, "files", good, secret="x" * 48, world=world), 401),
        "a person's bearer token": (call(client, "files", good, world=world, Authorization="Bearer abc"), 401),
        "the hub names another user": (call(client, "files", good, user="dualrole", world=world), 401),
        "the hub names another server": (call(client, "files", good, server="p-2026-9999", world=world), 401),
        "a forged credential": (call(client, "files", {**good, "credential": ".".join(forged)}, world=world), 401),
        "an expired credential": (call(client, "files", {**good, "credential": handover.mint_credential(
            settings, a["ws"], a["uid"], world["project_id"], ttl_seconds=-1)}, world=world), 401),
        "B's request with A's credential": (call(client, "files", {**good, "request_id": b["request"]},
                                                 world=world), 404),
        "B's credential for A's request": (call(client, "files", {**good, "credential": b["credential"]},
                                                user="dualrole", world=world), 404),
        "a pseudonym in the file": (call(client, "files", file_body(world, "researcher", "p.txt",
                                                                    f"x {cohort()['pseudo_id'][3]}".encode()),
                                         world=world), 422),
        "a path outside outputs": (call(client, "files", {**good, "name": "../secret_key"}, world=world), 422),
        "bytes that are not base64": (call(client, "files", {**good, "data": "%%%"}, world=world), 422),
    }
    for label, (response, status) in cases.items():
        assert response.status_code == status, (label, response.status_code, response.get_json())
    assert files_of(session_factory, a["request"]) == [] and files_of(session_factory, b["request"]) == []
    with session_factory() as s:
        refusals = s.scalars(select(AuditEvent).where(AuditEvent.action == "output_request.handover_refused")).all()
        assert any("pseudonyms" in e.details["reason"] for e in refusals)
    # a stopped workspace session ends the credential at once; so does losing the right to request outputs
    with unit_of_work(session_factory) as s:
        workspaces.stop_session(s, s.get(WorkspaceSession, a["ws"]), "test")
    assert call(client, "files", good, world=world).status_code == 401
    # a request that is no longer a draft takes no file
    ok = call(client, "files", file_body(world, "dualrole", "t.csv", b"region,n\nNorth,40\n"), user="dualrole",
              world=world)
    assert ok.status_code == 201
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, b["request"])
        service.submit(s, f.user(s, "dualrole"), request, settings)
    late = call(client, "files", file_body(world, "dualrole", "u.csv", b"region,n\nNorth,40\n"), user="dualrole",
                world=world)
    assert late.status_code == 409
    assert WATCH.opened == []


@pytest.fixture
def client(app: Flask) -> Iterator[Any]:
    yield app.test_client()


def test_a_workspace_that_fails_to_start_leaves_no_open_session_and_so_no_live_credential(
        session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> None:
    from gateway.config import WorkspaceSettings
    from tests.support.browser import free_port

    project_id = ready_project(session_factory, settings)
    unreachable = settings.model_copy(update={"workspaces": WorkspaceSettings(
        hub_url=f"http://127.0.0.1:{free_port()}", hub_state_dir=settings.hub_state_dir,
        extracts_root=settings.extracts_root, homes_root=settings.homes_root, start_timeout=5)})
    unreachable.hub_state_dir.mkdir(parents=True, exist_ok=True)
    (unreachable.hub_state_dir / "gateway-token").write_text("t" * 32)
    with session_factory() as s:
        uid = f.user(s, "researcher").id
    with pytest.raises(workspaces.WorkspaceUnavailable):
        workspaces.open_workspace(session_factory, unreachable, uid, project_id)
    with session_factory() as s:
        [ws] = s.scalars(select(WorkspaceSession)).all()
        assert ws.stopped_at is not None and ws.stop_reason == "the workspace could not be started"
        credential = handover.mint_credential(settings, ws.id, uid, project_id)
        with pytest.raises(handover.CredentialError, match="ended"):
            handover.context_for(s, settings, credential, "researcher", ws.server_name)


def test_a_refused_hand_overs_name_reaches_the_audit_log_only_when_plain_and_free_of_pseudonyms(
        client: Any, world: dict[str, Any], session_factory: sessionmaker[Session]) -> None:
    """The name sent with a hand-over is the researcher's text. A refused one was kept in the audit log as sent (up
    to 200 characters of anything, or a pseudonym the intake had just refused), read outside the workspace. It is
    kept now only as a plain file name without pseudonyms; otherwise only its SHA-256, to match a name one holds."""
    pseudonym = cohort()["pseudo_id"][5]
    sent = {"prose": "../row 1: born 1961-03-04, SW1A 1AA, C34.1", "pseudonym": f"p {pseudonym}.csv",
            "plain": "big.exe"}
    for name in sent.values():
        assert call(client, "files", file_body(world, "researcher", name, b"region,n\nNorth,40\n"),
                    world=world).status_code == 422
    with session_factory() as s:
        kept = [e.details for e in s.scalars(select(AuditEvent).where(
            AuditEvent.action == "output_request.handover_refused").order_by(AuditEvent.seq))]
    text = json.dumps(kept)
    assert "1961-03-04" not in text and pseudonym not in text
    assert [k["name"] for k in kept] == [None, None, "big.exe"]
    assert kept[0]["name_sha256"] == hashlib.sha256(sent["prose"].encode()).hexdigest()


def test_a_file_up_to_the_hubs_limit_reaches_the_hand_over_checks(client: Any, world: dict[str, Any]) -> None:
    """The hub forwards up to 64 MiB, and the hand-over takes up to 64 MiB; the app's 25 MiB limit for every other
    request answered 413 first, so a file over about 18 MiB (as base64) never reached the checks, whatever
    outputs.max_file_bytes said (found by the docs audit; this failed first with 413)."""
    big = {"credential": "not-a-credential", "data": "A" * (30 * 1024 * 1024)}
    answer = call(client, "files", big, world=world)
    assert answer.status_code != 413 and "credential" in answer.get_data(as_text=True).lower()
    assert call(client, "files", big, world=world, secret="wrong").status_code == 401  # the secret first
