"""Opening and stopping workspaces: the gateway decides, the hub obeys.

Opening checks the derived entitlement, starts (or reuses) the researcher's named server for the project
through the hub's REST API, records the session, and returns a one-time sign-in link to the hub. Stopping is
queued in the outbox in the same transaction as the decision that ends entitlement (a project leaving the active
state, removal from the team, a new version of the data access agreement), and the worker's sweep stops any session
whose entitlement has ended for another reason (lapsed accreditation, an account deactivated or no longer a
researcher's) or that slipped past those decisions.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit, outbox
from gateway.config import Settings
from gateway.db import unit_of_work, utcnow
from gateway.errors import DomainError, PermissionDenied
from gateway.models import User
from gateway.permissions import account_data_access_problem
from gateway.workspaces.entitlement import (
    NOT_ACCEPTED,
    current_extract,
    entitlement,
    has_accepted_current_agreement,
    project_and_team_reasons,
    workspace_id,
)
from gateway.workspaces.hub import HubClient, HubError
from gateway.workspaces.models import WorkspaceSession
from gateway.workspaces.spec import LEGACY_USERNAME_RE, WorkspaceSpec, tier_named
from gateway.workspaces.tickets import load_secret, mint_ticket
from projects import agreements
from projects.accreditation_rules import valid_accreditation
from projects.lifecycle import is_member
from projects.models import AgreementAcceptance, DataAccessAgreement, Project
from projects.workflow import ProjectState

log = logging.getLogger(__name__)


class NotEntitled(PermissionDenied):
    error = "not_entitled"


class WorkspaceUnavailable(DomainError):
    status_code = 503
    error = "workspace_unavailable"


def hub_username(user: User) -> str:
    """The hub account for a gateway user, from its id alone: no account can choose a name that is another's.

    `_u<id>`: no name of the earlier scheme starts with '_', so none can be a new one (see spec.HUB_USER_RE).
    """
    return f"_u{user.id}"


def legacy_hub_username(user: User) -> str:
    """The name releases before 0014 used (the username, or `user-<id>`, which another account could hold)."""
    return user.username if LEGACY_USERNAME_RE.match(user.username) else f"user-{user.id}"


def session_hub_user(ws: WorkspaceSession) -> str:
    """The hub user a session's server runs as (sessions opened before 0014 keep their old name)."""
    return ws.hub_user or hub_username(ws.user)


def legacy_name_is_shared(session: Session, user: User) -> bool:
    """Whether another account had the same pre-0014 hub name (then nobody may inherit that home)."""
    legacy = legacy_hub_username(user)
    same_name = session.scalars(select(User).where(User.username == legacy))
    candidates = [other for other in same_name if other.id != user.id]
    match = re.fullmatch(r"user-([0-9]+)", legacy)
    if match:
        other = session.get(User, int(match.group(1)))
        if other is not None and other.id != user.id:
            candidates.append(other)
    return any(legacy_hub_username(other) == legacy for other in candidates)


def hub_client(settings: Settings) -> HubClient:
    token_file = settings.hub_state_dir / "gateway-token"
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise WorkspaceUnavailable("The workspace service is not set up on this server yet.") from exc
    return HubClient(settings.workspaces.hub_url, token)


def open_sessions(session: Session, project: Project | None = None) -> list[WorkspaceSession]:
    if project is None:
        return list(session.scalars(_OPEN))
    return list(session.scalars(_OPEN_FOR_PROJECT, {"project_id": project.id}))


# the project overview reads a project's open sessions on every view: built once per process
_OPEN = select(WorkspaceSession).where(WorkspaceSession.stopped_at.is_(None))
_OPEN_FOR_PROJECT = _OPEN.where(WorkspaceSession.project_id == bindparam("project_id"))


def _session_for(factory: sessionmaker[Session], user_id: int, project_id: int, server: str, hub_user: str,
                 tier: str, extract: Path) -> tuple[int, str]:
    """The open workspace session of this person on this project, opened (and audited) when there is none, and the
    project's security tier to start the server in.

    The tier is read here, under a lock on the project's row that lifecycle.raise_security_tier takes too: a raise
    either commits first (and the server starts high) or finds this session open and stops it. Read earlier, a
    raise landing in between would find no session to stop and the server would start in the old tier.

    What the decisions that stop workspaces change is checked again here, under the same locks as they take: the
    project is active and the person on its team (a suspension, revocation, closure or an amendment's removal writes
    the project's row, so it waits for this lock or this waits for it), and they have accepted the current data
    access agreement (a publication holds the current version's row, which this locks for sharing). The decision
    either commits first, and is seen here, or finds this session open and stops it. Checked only before, a decision
    landing in between found no session to stop and the server ran on.
    """
    with unit_of_work(factory) as session:
        session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
        agreements.lock_current(session, exclusive=False)
        project, user = session.get(Project, project_id), session.get(User, user_id)  # read after the locks
        assert project is not None and user is not None
        security_tier = project.security_tier
        reasons = project_and_team_reasons(user, project)
        if not has_accepted_current_agreement(session, user):
            reasons.append(NOT_ACCEPTED)
        if reasons:
            raise NotEntitled("You cannot open a workspace for this project: " + " ".join(reasons))
        existing = session.scalar(select(WorkspaceSession).where(
            WorkspaceSession.project_id == project_id, WorkspaceSession.user_id == user_id,
            WorkspaceSession.stopped_at.is_(None)))
        if existing is not None:
            return existing.id, security_tier
        ws = WorkspaceSession(project_id=project_id, user_id=user_id, server_name=server, hub_user=hub_user,
                              tier=tier, extract_path=str(extract))
        session.add(ws)
        session.flush()
        audit.record(session, session.get(User, user_id), "workspace.opened", "project", project_id,
                     {"server": server, "tier": tier, "security_tier": security_tier, "extract": extract.name})
        return ws.id, security_tier


def open_workspace(factory: sessionmaker[Session], settings: Settings, user_id: int, project_id: int) -> str:
    """Start or reuse the workspace; returns the one-time URL that signs the browser in to it.

    The session is recorded first, so the server can be started with a hand-over credential bound to it
    (gateway/outputs/handover.py); if the start fails, that session is closed again.
    """
    from gateway.outputs.handover import mint_credential

    with factory() as session:
        user, project = session.get(User, user_id), session.get(Project, project_id)
        assert user is not None and project is not None
        decision = entitlement(session, user, project, settings.extracts_root)
        if not decision.ok:
            raise NotEntitled("You cannot open a workspace for this project: " + " ".join(decision.reasons))
        extract = current_extract(settings.extracts_root, project)
        assert extract is not None
        server, tier = workspace_id(project), tier_named(project.workspace_size)
        username = hub_username(user)
        legacy = legacy_hub_username(user)
        legacy_open = [ws for ws in open_sessions(session, project)
                       if ws.user_id == user_id and session_hub_user(ws) != username]
        legacy_shared = legacy_name_is_shared(session, user)
    client = hub_client(settings)  # before the session: no hub set up means nothing is recorded
    ws_id: int | None = None
    try:
        if legacy_open:  # a server started under the old name: stop it before its home moves
            client.stop_server(legacy, server)
            with unit_of_work(factory) as session:
                for ws in legacy_open:
                    stop_session(session, session.get(WorkspaceSession, ws.id), "renamed to the id-based hub name",
                                 queue_stop=False)
        if legacy_shared:
            log.warning("not moving the %s home of %r: two accounts had that hub name", server, legacy)
        # Recorded before the start, so the server gets a hand-over credential bound to this session.
        # read at each start (a running server keeps the tier it started with)
        ws_id, security_tier = _session_for(factory, user_id, project_id, server, username, tier.name, extract)
        credential = mint_credential(settings, ws_id, user_id, project_id,
                                     ttl_seconds=settings.workspaces.handover_ttl_hours * 3600)
        # The spawner (as root, on the host) moves a home made under the old name; the gateway never touches homes.
        spec = WorkspaceSpec(project_id=server, extract=str(extract), tier=tier, handover_credential=credential,
                             legacy_home=None if legacy_shared or legacy == username else legacy,
                             security_tier=security_tier, paste_limit=settings.workspaces.high_tier_paste_limit)
        client.ensure_user(username)
        client.start_server(username, spec)
        client.wait_until_ready(username, server, timeout=settings.workspaces.start_timeout)
    except (HubError, OSError, requests.RequestException) as exc:
        log.warning("workspace start failed for %s/%s: %s", username, server, exc)
        if ws_id is not None:
            with unit_of_work(factory) as session:
                ws = session.get(WorkspaceSession, ws_id)
                if ws is not None and ws.stopped_at is None:
                    ws.stopped_at, ws.stop_reason = utcnow(), "the workspace could not be started"
                    audit.record(session, "system", "workspace.ended", "project", project_id,
                                 {"user": ws.user.username, "server": server, "reason": "start failed"})
        raise WorkspaceUnavailable("The workspace could not be started just now. Nothing has changed; "
                                   "try again in a minute, or contact the service desk.") from exc
    assert ws_id is not None
    _check_still_open(factory, client, ws_id, username, server)
    ticket = mint_ticket(load_secret(settings.hub_state_dir / "ticket-secret"), username, server,
                         ttl_seconds=settings.workspaces.ticket_ttl_seconds)
    return client.login_url(ticket)


def _check_still_open(factory: sessionmaker[Session], client: HubClient, ws_id: int, username: str,
                      server: str) -> None:
    """The session is still open now that its server is ready; else stop the server and send nobody to it.

    A decision that ended the session while the server started (a suspension, a removal, a new agreement version)
    queued the server's stop, and the worker may have delivered it before the hub had the server: the hub then said
    there was nothing to stop, and the server started after it, with no open session for any sweep to find. A decision
    committed after this check queues a stop that reaches the running server.
    """
    with factory() as session:
        ws = session.get(WorkspaceSession, ws_id)
        if ws is not None and ws.stopped_at is None:
            return
        reason = ws.stop_reason if ws is not None else "the session is gone"
    try:
        client.stop_server(username, server)
    except (HubError, OSError, requests.RequestException) as exc:  # the worker stops it, whatever the hub says now
        log.warning("stopping %s/%s, ended while it started, failed: %s", username, server, exc)
        with unit_of_work(factory) as session:
            outbox.enqueue(session, "workspace.stop", {"username": username, "server": server},
                           dedupe_key=f"workspace-stop:{ws_id}:after-start")
    raise NotEntitled(f"You cannot open a workspace for this project: it was stopped while it started ({reason}).")


def stop_session(session: Session, ws: WorkspaceSession, reason: str, actor: User | str = "system",
                 queue_stop: bool = True) -> None:
    """Close the session now and queue the server's stop; the two commit (or not) together."""
    if ws.stopped_at is not None:
        return
    ws.stopped_at = utcnow()
    ws.stop_reason = reason[:200]
    if queue_stop:
            outbox.enqueue(session, "workspace.stop", {"username": session_hub_user(ws), "server": ws.server_name},
                       dedupe_key=f"workspace-stop:{ws.id}")
    audit.record(session, actor, "workspace.stopped", "project", ws.project_id,
                 {"user": ws.user.username, "server": ws.server_name, "reason": reason})


def stop_project_workspaces(session: Session, project: Project, reason: str) -> None:
    for ws in open_sessions(session, project):
        stop_session(session, ws, reason)


def stop_member_workspaces(session: Session, project: Project, user_ids: set[int], reason: str) -> None:
    """Stop the workspaces of people who have just left the team, in the transaction that removes them: the server
    goes (through the outbox) and with it their view of the project's team folder; their next start is refused
    by the entitlement. (The worker's sweep would find them too, but only at its next pass.)"""
    for ws in open_sessions(session, project):
        if ws.user_id in user_ids:
            stop_session(session, ws, reason)


def unaccepted_agreement(version: int) -> str:
    return f"data access agreement version {version} not accepted"


# the open sessions of people who have not accepted a version of the agreement
_OPEN_WITHOUT_ACCEPTANCE = _OPEN.where(~select(AgreementAcceptance.id).where(
    AgreementAcceptance.user_id == WorkspaceSession.user_id,
    AgreementAcceptance.version == bindparam("version")).exists())


def stop_workspaces_without_agreement(session: Session, agreement: DataAccessAgreement) -> None:
    """Stop the open workspace of everyone who has not accepted this version of the agreement, in the transaction that
    publishes it (when it is new, that is everyone); their next start is refused by the entitlement until they
    accept it."""
    for ws in session.scalars(_OPEN_WITHOUT_ACCEPTANCE, {"version": agreement.version}):
        stop_session(session, ws, unaccepted_agreement(agreement.version))


def sweep(session: Session, today: dt.date) -> list[int]:
    """Stop every open session whose entitlement has ended; returns the session ids stopped."""
    stopped = []
    current = agreements.current(session)
    unaccepted = set() if current is None else {ws.id for ws in session.scalars(_OPEN_WITHOUT_ACCEPTANCE,
                                                                               {"version": current.version})}
    for ws in open_sessions(session):
        project = session.get(Project, ws.project_id)
        assert project is not None
        reason = None
        if (problem := account_data_access_problem(ws.user)) is not None:
            reason = problem.removeprefix("Your ").rstrip(".")  # "account is deactivated", "account does not have ..."
        elif project.state != ProjectState.ACTIVE:
            reason = f"project {project.state}"
        elif not is_member(ws.user, project):
            reason = "removed from the project team"
        elif valid_accreditation(session, ws.user, today) is None:
            reason = "accreditation lapsed"
        elif current is None or ws.id in unaccepted:
            reason = "no data access agreement published" if current is None else unaccepted_agreement(current.version)
        if reason:
            stop_session(session, ws, reason)
            stopped.append(ws.id)
    return stopped


def reconcile(factory: sessionmaker[Session], settings: Settings) -> int:
    """Close sessions whose server the hub no longer runs (idle-culled, crashed); returns how many."""
    try:
        running = {(s.username, s.server_name) for s in hub_client(settings).list_servers() if s.running}
    except (WorkspaceUnavailable, HubError, OSError, requests.RequestException) as exc:  # hub down: next pass
        log.info("hub not reachable for reconciliation: %s", exc)
        return 0
    closed = 0
    with unit_of_work(factory) as session:
        for ws in open_sessions(session):
            if (session_hub_user(ws), ws.server_name) not in running:
                ws.stopped_at = utcnow()
                ws.stop_reason = "stopped by the hub (idle or ended)"
                audit.record(session, "system", "workspace.ended", "project", ws.project_id,
                             {"user": ws.user.username, "server": ws.server_name})
                closed += 1
    return closed


@outbox.handler("workspace.stop")
def deliver_stop(ctx: outbox.WorkerContext, payload: dict[str, Any]) -> None:
    hub_client(ctx.settings).stop_server(payload["username"], payload["server"])
