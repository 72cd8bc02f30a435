"""The SQL forms of the visibility and recusal rules select exactly the rows their Python twins accept, and the home
page's counts (made with them) equal the counts the Python rules give over the whole rows.

Run on the demo data plus the states the rules branch on: a declared conflict, a reviewer at the applying
organisation, a team member who is not the applicant, an applicant no longer listed in their team, a member removed
from a project's team, a project lead no longer on its team, an amendment under review with a reviewer on the
project's team but not on the amendment's and with a chair who was once on the project's team, a closed project,
projects ending within a week and within a month. Those states are written straight into the rows: the rules must
agree on any state the database can hold, however it was reached.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from gateway import demo
from gateway.config import Settings
from gateway.db import unit_of_work, utcnow
from gateway.home import NEAR_EXPIRY_DAYS, URGENT_EXPIRY_DAYS, Waiting, waiting_for
from gateway.models import User
from gateway.outputs import service as outputs
from gateway.outputs.models import OutputRequest, OutputReview
from gateway.outputs.workflow import REVIEWABLE_STATES, OutputState
from gateway.permissions import Permission, Role, has_permission
from projects import applications, dac, lifecycle
from projects.models import (
    Application,
    ApplicationMember,
    Project,
    ProjectFormerMember,
    ProjectMember,
    ReviewAssignment,
)
from projects.workflow import AppState, ProjectState

TODAY = utcnow().date()


def _edge_cases(s: Session) -> None:
    def user(name: str) -> User:
        found = s.scalar(select(User).where(User.username == name))
        assert found is not None
        return found

    under_review = s.scalar(select(Application).where(Application.state == AppState.UNDER_REVIEW.value)
                            .order_by(Application.id))
    assert under_review is not None and under_review.organisation_id is not None
    dac.declare_conflict(s, user("dac2"), under_review, True, "I advised the applicants.")
    user("dac1").organisation_id = under_review.organisation_id  # recused by organisation, not by declaration
    # a team member who is not the applicant (on the newest application), and an applicant whose member row is gone
    newest = s.scalar(select(Application).order_by(Application.id.desc()))
    oldest = s.scalar(select(Application).order_by(Application.id))
    assert newest is not None and oldest is not None and newest.applicant_id != user("researcher2").id
    s.add(ApplicationMember(application_id=newest.id, user_id=user("researcher2").id, project_role="analyst"))
    s.execute(delete(ApplicationMember).where(ApplicationMember.application_id == oldest.id,
                                              ApplicationMember.user_id == oldest.applicant_id))
    projects = list(s.scalars(select(Project).where(Project.state == ProjectState.ACTIVE.value).order_by(Project.id)))
    assert len(projects) >= 2
    first, second = projects[0], projects[1]
    first.end_date = TODAY + dt.timedelta(days=URGENT_EXPIRY_DAYS - 2)
    second.end_date = TODAY + dt.timedelta(days=NEAR_EXPIRY_DAYS - 5)
    # the lead of the second project leaves its team (still its lead); another member leaves the first
    s.execute(delete(ProjectMember).where(ProjectMember.project_id == second.id,
                                          ProjectMember.user_id == second.lead_id))
    s.execute(delete(ProjectMember).where(ProjectMember.project_id == first.id,
                                          ProjectMember.user_id != first.lead_id))
    # output requests returned to their authors: one to the first project's lead, still on its team (counted), one
    # to the second's, who has left it (not counted), and one in another state (not counted)
    for project, state in ((first, OutputState.RETURNED), (second, OutputState.RETURNED), (first, OutputState.PENDING)):
        s.add(OutputRequest(project_id=project.id, author_id=project.lead_id, title="Edge case", state=state.value))
    # requests awaiting the checkers: submitted (by the first project's lead; checker1 reviewed its earlier round),
    # partly reviewed by checker1 this round, reviewed; checker2 was once on the first project's team
    waiting = {state: OutputRequest(project_id=first.id, author_id=first.lead_id, title="Waiting", state=state.value,
                                    round=2, submitted_at=utcnow())
               for state in (OutputState.SUBMITTED, OutputState.PARTIALLY_REVIEWED, OutputState.REVIEWED)}
    s.add(OutputRequest(project_id=second.id, author_id=user("checker1").id, title="Theirs", round=1,
                        state=OutputState.SUBMITTED.value, submitted_at=utcnow()))
    s.add_all(waiting.values())
    s.flush()
    s.add(OutputReview(request_id=waiting[OutputState.PARTIALLY_REVIEWED].id, reviewer_id=user("checker1").id,
                       round=2, outcome="approve", submitted_at=utcnow()))
    s.add(OutputReview(request_id=waiting[OutputState.SUBMITTED].id, reviewer_id=user("checker1").id, round=1,
                       outcome="approve", submitted_at=utcnow()))
    s.add(ProjectFormerMember(project_id=first.id, user_id=user("checker2").id, joined_at=utcnow(),
                              left_at=utcnow(), reason="edge case"))
    # an amendment of the first project under review, whose team is its lead alone: the lay member is on the
    # project's team (the amendment takes them off it) and reviews it; the chair was once on the team
    amendment = Application(reference="AMD-EDGE-1", kind="amendment", project_id=first.id, applicant_id=first.lead_id,
                            organisation_id=first.organisation_id, title="Edge case", state=AppState.UNDER_REVIEW.value,
                            submitted_at=utcnow())
    amendment.members = [ApplicationMember(user_id=first.lead_id, project_role="lead")]
    s.add(amendment)
    s.add(ProjectMember(project_id=first.id, user_id=user("laymember").id, project_role="analyst"))
    s.add(ProjectFormerMember(project_id=first.id, user_id=user("dacchair").id, joined_at=utcnow(),
                              left_at=utcnow(), reason="edge case"))
    s.flush()
    s.add(ReviewAssignment(application_id=amendment.id, reviewer_id=user("laymember").id,
                           assigned_by_id=user("dacchair").id))
    closed = s.scalar(select(Project).where(Project.id.not_in([first.id, second.id])).order_by(Project.id))
    if closed is not None:
        closed.state, closed.end_date = ProjectState.CLOSED.value, TODAY + dt.timedelta(days=3)


def _seeded(factory: sessionmaker[Session], settings: Settings) -> None:
    with unit_of_work(factory) as s:
        demo.seed(s, settings)
    with unit_of_work(factory) as s:
        _edge_cases(s)


def _ids(s: Session, entity: type[Application] | type[Project] | type[OutputRequest],
         clause: ColumnElement[bool]) -> set[int]:
    return set(s.scalars(select(entity.id).where(clause)))


def test_each_sql_form_selects_the_rows_its_python_rule_accepts(session_factory: sessionmaker[Session],
                                                                settings: Settings) -> None:
    _seeded(session_factory, settings)
    with session_factory() as s:
        users = list(s.scalars(select(User)))
        apps = list(s.scalars(select(Application).options(
            selectinload(Application.members), selectinload(Application.assignments))))
        projects = list(s.scalars(select(Project).options(selectinload(Project.members))))
        requests = list(s.scalars(select(OutputRequest)))
        seen: dict[str, set[bool]] = {}
        for user in users:
            pairs: list[tuple[str, type[Application] | type[Project] | type[OutputRequest], ColumnElement[bool],
                              set[int]]] = [
                ("team", Application, applications.team_member_clause(user.id),
                 {a.id for a in apps if applications.is_team_member(user, a)}),
                ("view application", Application,
                 applications.can_view_application_clause(user.id, applications.sees_submitted_applications(user)),
                 {a.id for a in apps if applications.can_view_application(user, a)}),
                ("recused", Application, dac.is_recused_clause(user.id, user.organisation_id),
                 {a.id for a in apps if dac.is_recused(user, a)}),
                ("assigned", Application, dac.own_assignment_clause(user.id),
                 {a.id for a in apps if dac.assignment_of(user, a) is not None}),
                ("view project", Project, lifecycle.can_view_project_clause(user.id, lifecycle.is_staff(user)),
                 {p.id for p in projects if lifecycle.can_view_project(user, p)}),
                ("no review conflict", OutputRequest, outputs.no_review_conflict_clause(user.id),
                 {r.id for r in requests if outputs.review_conflict(user, r) is None}),
            ]
            for name, entity, clause, expected in pairs:
                assert _ids(s, entity, clause) == expected, (name, user.username)
                rows = {Application: apps, Project: projects, OutputRequest: requests}[entity]
                seen.setdefault(name, set()).update(row.id in expected for row in rows)
        # not vacuous: every rule both accepted and refused some row for someone
        assert all(outcomes == {True, False} for outcomes in seen.values()), seen
        # and the branches the edge cases set up are there
        assert any(a.conflict for a in s.scalars(select(ReviewAssignment)))
        assert any(u.organisation_id is not None and dac.automatic_conflict(u, a) == "works at the applying "
                   "organisation" and dac.assignment_of(u, a) is not None for u in users for a in apps)
        conflicts = {(u.username, dac.automatic_conflict(u, a)) for u in users for a in apps}
        assert ("laymember", "is on the team of the project it amends") in conflicts
        assert ("dacchair", "was on the team of the project it amends") in conflicts


def _expected(s: Session, user: User) -> dict[str, tuple[int, bool]]:
    """What the home page counted before it counted in SQL: whole rows through the services, then the Python rules."""
    found: dict[str, tuple[int, bool]] = {}

    def add(kind: str, count: int, urgent: bool = False) -> None:
        if count and (kind not in found or count > found[kind][0]):
            found[kind] = (count, urgent)

    def near(projects: list[Project]) -> None:
        ending = [p for p in projects if p.state == ProjectState.ACTIVE
                  and TODAY <= p.end_date <= TODAY + dt.timedelta(days=NEAR_EXPIRY_DAYS)]
        add("projects_near_expiry", len(ending),
            any(p.end_date <= TODAY + dt.timedelta(days=URGENT_EXPIRY_DAYS) for p in ending))

    visible = applications.list_applications(s, user)
    if Role.RESEARCHER.value in user.roles and has_permission(user, Permission.VIEW_PROJECTS):
        add("outputs_returned", sum(r.author_id == user.id and r.state == OutputState.RETURNED
                                    for r in outputs.requests_for(s, user)))
        add("applications_returned", sum(a.state == AppState.CHANGES_REQUESTED
                                         and applications.is_team_member(user, a) for a in visible))
        near([p for p in lifecycle.list_projects(s, user) if p.lead_id == user.id])
    committee = any(role.value in user.roles for role in (Role.DAC_MEMBER, Role.LAY_MEMBER, Role.DAC_CHAIR))
    if committee and has_permission(user, Permission.REVIEW_APPLICATIONS):
        owed = 0
        for a in visible:
            own = dac.assignment_of(user, a)
            if a.state == AppState.UNDER_REVIEW and not dac.is_recused(user, a) and own is not None and not any(
                    r.round == a.round for r in own.reviews):
                owed += 1
        add("votes_owed", owed)
    if Role.DAC_CHAIR.value in user.roles and has_permission(user, Permission.CHAIR_DAC):
        open_to_chair = [a for a in visible if not dac.is_recused(user, a)]
        add("applications_to_assign", sum(a.state == AppState.SUBMITTED for a in open_to_chair))
        add("applications_to_decide", sum(a.state == AppState.UNDER_REVIEW for a in open_to_chair))
    if Role.ADMIN.value in user.roles and has_permission(user, Permission.RELEASE_EXTRACTS):
        near(lifecycle.list_projects(s, user))
    if Role.OUTPUT_CHECKER.value in user.roles and has_permission(user, Permission.REVIEW_OUTPUTS):
        queue = outputs.queue(s, user)
        add("outputs_to_check", sum(r.state in REVIEWABLE_STATES and outputs.own_review(user, r) is None
                                    for r in queue))
        add("outputs_to_decide", sum(r.state == OutputState.REVIEWED for r in queue))
    return found


COUNTED_IN_SQL = {"outputs_returned", "applications_returned", "projects_near_expiry", "votes_owed",
                  "applications_to_assign", "applications_to_decide", "outputs_to_check", "outputs_to_decide"}


def test_home_counts_equal_the_python_rules_over_whole_rows(session_factory: sessionmaker[Session],
                                                            settings: Settings) -> None:
    _seeded(session_factory, settings)
    shown: set[str] = set()
    with session_factory() as s:
        for user in s.scalars(select(User)).all():
            items: list[Waiting] = waiting_for(s, user, TODAY)
            counted = {i.kind: (i.count, i.urgent) for i in items if i.kind in COUNTED_IN_SQL}
            assert counted == _expected(s, user), user.username
            shown |= set(counted)
    assert shown >= {"votes_owed", "applications_to_decide", "projects_near_expiry", "outputs_returned",
                     "outputs_to_check", "outputs_to_decide"}, shown
