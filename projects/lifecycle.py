"""Projects after approval: creation, amendments, suspension, reinstatement, revocation, closure, expiry."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BindParameter, ColumnElement, bindparam, or_, select, true
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from gateway import audit
from gateway.db import utcnow
from gateway.errors import Conflict, InvalidTransition, NotFound, PermissionDenied, ValidationError
from gateway.models import User
from gateway.permissions import Permission, Role, check_permission, has_permission
from projects import cohort, events
from projects.applications import ARTICLE6, ARTICLE9, COMMON_LAW
from projects.models import Application, Decision, Project, ProjectFormerMember, ProjectMember, ProjectVariable
from projects.workflow import PROJECT_TRANSITIONS, ProjectState, check_project_move
from projects.workspace_tiers import DEFAULT_SECURITY_TIER, SECURITY_TIERS

STAFF_ROLES = {Role.DAC_MEMBER, Role.DAC_CHAIR, Role.LAY_MEMBER, Role.ADMIN, Role.AUDITOR, Role.FINANCE,
               Role.OUTPUT_CHECKER, Role.ACCREDITATION_OFFICER}


def legal_basis_text(application: Application) -> str:
    parts = [
        f"UK GDPR Article {application.legal_basis_article6} ({ARTICLE6.get(application.legal_basis_article6, '')})",
        f"Article {application.legal_basis_article9} ({ARTICLE9.get(application.legal_basis_article9, '')})",
        f"common law: {COMMON_LAW.get(application.common_law_basis, application.common_law_basis)}",
    ]
    return "; ".join(parts)


def is_member(user: User, project: Project) -> bool:
    return any(m.user_id == user.id for m in project.members)


def was_member(user: User, project: Project) -> bool:
    """Taken off the project's team at some time (whether or not they are on it again)."""
    return any(f.user_id == user.id for f in project.former_members)


def on_team_ever_clause(user_id: int | BindParameter[int]) -> ColumnElement[bool]:
    """``is_member(user, project) or was_member(user, project)`` in the database, as a condition on Project: the
    person is on its team or was ever taken off it (the conflict rules of output checking and of the committee's
    review of an amendment read it; tests/integration/test_rules_in_sql.py holds each to its Python twin)."""
    return or_(Project.members.any(ProjectMember.user_id == user_id),
               Project.former_members.any(ProjectFormerMember.user_id == user_id))


def is_staff(user: User) -> bool:
    return any(role.value in user.roles for role in STAFF_ROLES)


def can_view_project(user: User, project: Project) -> bool:
    return is_member(user, project) or is_staff(user)


def can_view_project_clause(user_id: int | BindParameter[int], staff: bool) -> ColumnElement[bool]:
    """``can_view_project`` in the database, as a condition on Project; ``staff`` is ``is_staff(user)``
    (tests/integration/test_rules_in_sql.py holds the two together)."""
    return true() if staff else Project.members.any(ProjectMember.user_id == user_id)


# The team's accounts without their role grants (loaded only if asked for), and the organisation in the same query.
_PROJECT_PAGE = (selectinload(Project.members).joinedload(ProjectMember.user).lazyload(User.role_grants),
                 joinedload(Project.organisation))
# A list shows no project's variables: they are read only if a caller asks (the project page loads them).
_PROJECT_LIST = (*_PROJECT_PAGE, lazyload(Project.variables))
# One project: its team (a few rows) joined to it; its variables in one more statement only if the page reads them
# (the project's data page does, its other pages do not).
_ONE_PROJECT = (joinedload(Project.members).joinedload(ProjectMember.user).lazyload(User.role_grants),
                joinedload(Project.organisation), lazyload(Project.variables))


def get_project(session: Session, user: User, project_id: int) -> Project:
    project = session.get(Project, project_id, options=_ONE_PROJECT)
    if project is None or not can_view_project(user, project):
        # Somebody else's project answers exactly like a missing one, as every other object does: its existence is
        # public on the register, but by reference, and nothing is gained by confirming which ids are in use.
        raise NotFound("No such project.")
    return project


# built once per process, for staff and for anyone else (SQLAlchemy keeps a built statement's cache key)
_ALL_PROJECTS = select(Project).order_by(Project.id.desc()).options(*_PROJECT_LIST)
_MEMBER_PROJECTS = _ALL_PROJECTS.where(can_view_project_clause(bindparam("user_id"), staff=False))


def list_projects(session: Session, user: User) -> list[Project]:
    """The projects this person can see. The database narrows the rows by the same rule (staff see every project,
    anyone else the ones they are a member of), so a researcher's list does not load the whole table;
    can_view_project still decides each row."""
    rows = session.scalars(_ALL_PROJECTS) if is_staff(user) else session.scalars(_MEMBER_PROJECTS, {"user_id": user.id})
    return [p for p in rows if can_view_project(user, p)]


def create_project(session: Session, actor: User, application: Application, decision: Decision,
                   today: dt.date, security_tier: str = DEFAULT_SECURITY_TIER) -> Project:
    assert decision.access_end_date is not None
    if security_tier not in SECURITY_TIERS:
        raise ValueError(f"security_tier must be one of {list(SECURITY_TIERS)}")
    project = Project(
        reference=application.reference.replace("LSDE-", "P-"), application_id=application.id,
        title=application.title, lay_summary=application.lay_summary, public_benefit=application.public_benefit,
        organisation_id=application.organisation_id, lead_id=application.applicant_id,
        legal_basis=legal_basis_text(application), opt_out_applies=bool(application.opt_out_applies),
        commercial_involvement=application.commercial_involvement, workspace_size=application.workspace_size,
        security_tier=security_tier, date_from=application.date_from, date_to=application.date_to,
        conditions=decision.conditions,
        start_date=today, end_date=decision.access_end_date, approved_at=decision.decided_at or utcnow(),
        generalisation=application.generalisation, **cohort.copied(application))
    project.members = [ProjectMember(user_id=m.user_id, project_role=m.project_role) for m in application.members]
    project.variables = [ProjectVariable(dataset=v.dataset, variable=v.variable) for v in application.variables]
    session.add(project)
    session.flush()
    audit.record(session, actor, "project.created", "project", project.id,
                 {"reference": project.reference, "application": application.reference,
                  "end_date": project.end_date, "members": sorted(m.user.username for m in project.members),
                  "cohort": cohort.copied(project), "security_tier": project.security_tier})
    events.emit(session, events.ProjectCreated(project, actor))  # its first extract is built (gateway.wiring)
    return project


FINAL_STATES = frozenset({ProjectState.CLOSED, ProjectState.REVOKED})


def check_amendable(session: Session, amendment: Application) -> None:
    """An amendment is approved only into a project that has not ended for good: one revoked or closed while the
    amendment was under review keeps the team, data and terms it ended with (the committee can still refuse it).
    Judged on the project's status as committed, under its lock."""
    project = session.get(Project, amendment.project_id)
    assert project is not None
    _lock_afresh(session, project)
    if project.state in FINAL_STATES:
        raise InvalidTransition(f"{project.reference} was {project.state}: an amendment can no longer be approved "
                                "into it. Reject the amendment instead.")


def apply_amendment(session: Session, actor: User, amendment: Application, decision: Decision,
                    today: dt.date) -> Project:
    check_amendable(session, amendment)
    project = session.get(Project, amendment.project_id)
    assert project is not None
    before_members = {m.user_id for m in project.members}
    wanted_members = {m.user_id: m.project_role for m in amendment.members}
    removed = before_members - set(wanted_members)
    if removed:
        remove_members(session, project, removed, "removed from the project team by amendment " + amendment.reference)
    for user_id, role in wanted_members.items():
        if user_id not in before_members:
            project.members.append(ProjectMember(user_id=user_id, project_role=role))
    wanted_vars = {(v.dataset, v.variable) for v in amendment.variables}
    project.variables = [v for v in project.variables if (v.dataset, v.variable) in wanted_vars]
    have = {(v.dataset, v.variable) for v in project.variables}
    project.variables.extend(ProjectVariable(dataset=d, variable=v) for d, v in sorted(wanted_vars - have))
    if amendment.requested_end_date:
        project.end_date = amendment.requested_end_date
    for field, value in cohort.copied(amendment).items():  # pre-filled from the project, so unchanged unless edited
        setattr(project, field, value)
    # The rest of what the committee approved, as amended (pre-filled too): what the register and the extract show.
    approved = {"title": amendment.title, "lay_summary": amendment.lay_summary,
                "public_benefit": amendment.public_benefit, "legal_basis": legal_basis_text(amendment),
                "opt_out_applies": bool(amendment.opt_out_applies), "date_from": amendment.date_from,
                "date_to": amendment.date_to, "workspace_size": amendment.workspace_size,
                "commercial_involvement": amendment.commercial_involvement,
                "generalisation": amendment.generalisation}
    changed = {field: [getattr(project, field), value] for field, value in approved.items()
               if getattr(project, field) != value}
    for field, (_, value) in changed.items():
        setattr(project, field, value)
    if decision.conditions:
        project.conditions = (project.conditions + "\n" + decision.conditions).strip()
    project.approved_at = decision.decided_at or utcnow()
    if project.state == ProjectState.EXPIRED and project.end_date > today:
        _move(session, actor, project, ProjectState.ACTIVE, "extended by amendment " + amendment.reference)
    session.flush()
    audit.record(session, actor, "project.amended", "project", project.id,
                 {"amendment": amendment.reference, "members": sorted(str(u) for u in wanted_members),
                  "removed": sorted(str(u) for u in removed),
                  "variables": sorted(f"{d}.{v}" for d, v in wanted_vars), "end_date": project.end_date,
                  "cohort": cohort.copied(project), "changed": changed})
    events.emit(session, events.ProjectAmended(project, amendment, actor))  # an active one's extract is rebuilt
    return project


def remove_members(session: Session, project: Project, user_ids: set[int], reason: str) -> None:
    """Take these people off the team: their member rows go, a former-member row each is kept (the conflict rules
    read it), and MembersRemoved is emitted (their workspaces stop). Every removal goes through here; the caller
    records the change in the audit log (an amendment's project.amended names who left).

    The project's row is locked first, to the commit, as a workspace start locks it to check the team once more
    (gateway.workspaces.service._session_for): a start either commits before the removal's workspaces are looked for
    (and is stopped with them) or waits and finds the person gone."""
    session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    leaving = [m for m in project.members if m.user_id in user_ids]
    left_at = utcnow()
    project.former_members.extend(ProjectFormerMember(user_id=m.user_id, joined_at=m.added_at or left_at,
                                                      left_at=left_at, reason=reason) for m in leaving)
    project.members = [m for m in project.members if m.user_id not in user_ids]
    events.emit(session, events.MembersRemoved(project, frozenset(m.user_id for m in leaving), reason))


def _lock_afresh(session: Session, project: Project) -> None:
    """Lock the project's row and read it again, so a change is judged on the state as committed: the lead closing and
    an administrator suspending at once (or a page read before the other's change) each checked the state their
    request had read, and the later write won (a closed project, its key destroyed, became suspended). FOR UPDATE, as
    raise_security_tier and a workspace start take it."""
    session.flush()
    session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    session.refresh(project)


def _move(session: Session, actor: User | str, project: Project, target: ProjectState, reason: str) -> None:
    _lock_afresh(session, project)
    check_project_move(project.state, target)
    previous = project.state
    project.state = target
    project.state_changed_at = utcnow()
    project.state_reason = reason
    audit.record(session, actor, f"project.{target.value}", "project", project.id,
                 {"from": previous, "reason": reason})
    # leaving the active state stops the project's workspaces, closing destroys its pseudonym key, and the members
    # are emailed (subscribed in gateway.wiring)
    events.emit(session, events.ProjectStateChanged(project, previous, target.value, reason))


def _need_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ValidationError("The change could not be made.", field_errors={"reason": ["Give a reason."]})
    return reason


def suspend(session: Session, actor: User, project: Project, reason: str) -> None:
    check_permission(actor, Permission.MANAGE_PROJECTS)
    _move(session, actor, project, ProjectState.SUSPENDED, _need_reason(reason))


def reinstate(session: Session, actor: User, project: Project, reason: str) -> None:
    """End a suspension. A project whose end date passed while it was suspended is expired, not active: its access
    has ended (an approved extension makes it active again)."""
    check_permission(actor, Permission.MANAGE_PROJECTS)
    reason = _need_reason(reason)
    _lock_afresh(session, project)  # the end date and state as committed (an amendment may have extended it)
    if project.end_date < utcnow().date():
        _move(session, actor, project, ProjectState.EXPIRED,
              f"{reason} (reinstated after its access ended on {project.end_date})")
        return
    _move(session, actor, project, ProjectState.ACTIVE, reason)


def revoke(session: Session, actor: User, project: Project, reason: str) -> None:
    check_permission(actor, Permission.MANAGE_PROJECTS)
    _move(session, actor, project, ProjectState.REVOKED, _need_reason(reason))


def can_change_state(user: User, project: Project, action: str) -> bool:
    """Administrators suspend, reinstate and revoke; an administrator closes, and so does the lead while the project is
    active. A suspended project is the administrators' (PROJECT_OWNERS): its lead closing it would end the
    investigation on their own word (closed, not revoked, on the register, and the pseudonym key destroyed)."""
    if action == "close":
        if has_permission(user, Permission.MANAGE_PROJECTS):
            return True
        return user.id == project.lead_id and project.state == ProjectState.ACTIVE
    return action in {"suspend", "reinstate", "revoke"} and has_permission(user, Permission.MANAGE_PROJECTS)


def check_can_change_state(user: User, project: Project, action: str) -> None:
    if not can_change_state(user, project, action):
        raise PermissionDenied(f"You cannot {action} this project.")


def available_actions(user: User, project: Project) -> list[str]:
    """The state changes this person may make now (permitted, and allowed from the current state)."""
    allowed = {command for (source, _), command in PROJECT_TRANSITIONS.items() if source == project.state}
    return [a for a in ("suspend", "reinstate", "revoke", "close")
            if a in allowed and can_change_state(user, project, a)]


def can_raise_security_tier(user: User, project: Project) -> bool:
    """An administrator may raise an active project from the standard to the high security tier (never lower it:
    lowering is a new decision for the DAC)."""
    return (has_permission(user, Permission.MANAGE_PROJECTS) and project.state == ProjectState.ACTIVE
            and project.security_tier != "high")


def raise_security_tier(session: Session, actor: User, project: Project, reason: str) -> None:
    """Move the project to the high tier, audited with the reason. Its running workspaces are stopped, so the next
    start is in the high tier (a running server keeps the tier it started with)."""
    check_permission(actor, Permission.MANAGE_PROJECTS)
    reason = _need_reason(reason)
    # The project's row stays locked to the commit: a workspace starting now reads the tier under the same lock
    # (gateway.workspaces.service._session_for), so it either sees "high" or has a session that is stopped below.
    session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    session.refresh(project)  # as committed by whoever held the lock before
    if project.state != ProjectState.ACTIVE:
        raise Conflict("Only an active project's security tier can be raised.")
    if project.security_tier == "high":
        raise Conflict("This project is already in the high security tier.")
    previous, project.security_tier = project.security_tier, "high"
    session.flush()
    audit.record(session, actor, "project.security_tier_raised", "project", project.id,
                 {"from": previous, "to": project.security_tier, "reason": reason})
    # running workspaces stop and the members are emailed (gateway.wiring)
    events.emit(session, events.SecurityTierRaised(project, reason))


def close(session: Session, actor: User, project: Project, reason: str) -> None:
    _lock_afresh(session, project)  # the lead's right to close depends on the state: judged as committed
    check_can_change_state(actor, project, "close")
    _move(session, actor, project, ProjectState.CLOSED, _need_reason(reason))


def expire_due(session: Session, today: dt.date) -> list[str]:
    """The scheduled job: active projects past their end date expire; returns their references. A suspended one
    stays suspended until an administrator ends the suspension (reinstate expires it then): expired, it could be
    extended back to active, and the suspension lifted, by an amendment alone."""
    due = session.scalars(select(Project).where(Project.state == ProjectState.ACTIVE.value, Project.end_date < today))
    expired = []
    for project in list(due):
        _lock_afresh(session, project)  # suspended or extended meanwhile: as committed, it is not due
        if project.state != ProjectState.ACTIVE or not project.end_date < today:
            continue
        _move(session, "system", project, ProjectState.EXPIRED, f"access ended on {project.end_date}")
        expired.append(project.reference)
    return expired
