"""What is waiting for a person: the counts and links their home page shows, most urgent first.

One plain function per role, each counting with the same per-object rules as the page it links to (a checker
never counts a request of their own project, a DAC member counts only their own votes owed - never how many others
have voted - and a recused member counts nothing). Where that page's list would load whole rows only to count them,
the count runs in the database with the SQL form of each rule. A person with several roles
sees the items of each, merged and ordered by urgency.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, ScalarSelect, Select, bindparam, func, select
from sqlalchemy.orm import Session

from gateway.charging.invoices import list_invoices
from gateway.extracts.models import ExtractVersion
from gateway.models import User
from gateway.outputs import service as outputs
from gateway.permissions import Permission, Role, has_permission
from projects import applications, dac, lifecycle
from projects.accreditation import list_for_officer
from projects.models import Application, Project, Review, ReviewAssignment
from projects.workflow import FINAL_PROJECT_STATES, AppState, ProjectState

NEAR_EXPIRY_DAYS = 30
URGENT_EXPIRY_DAYS = 7

# The one mapping from a kind of waiting item to the words a person reads (singular, plural) and where it leads.
# The order is the urgency order: earlier kinds come first on the page.
WAITING: dict[str, tuple[str, str, str]] = {
    "votes_owed": ("application needs your vote", "applications need your vote", "applications.index"),
    "outputs_to_check": ("output request to check", "output requests to check", "outputs.queue"),
    "outputs_to_decide": ("checked output request awaiting a decision",
                          "checked output requests awaiting a decision", "outputs.queue"),
    "extracts_held": ("extract held for a custodian", "extracts held for a custodian", "projects.index"),
    "applications_to_assign": ("application awaiting reviewers", "applications awaiting reviewers",
                               "applications.index"),
    "applications_to_decide": ("application under review awaiting your decision",
                               "applications under review awaiting your decision", "applications.index"),
    "projects_near_expiry": (f"project ending within {NEAR_EXPIRY_DAYS} days",
                             f"projects ending within {NEAR_EXPIRY_DAYS} days", "projects.index"),
    "accreditations_to_verify": ("accreditation to verify", "accreditations to verify", "accreditation.queue"),
    "outputs_returned": ("output request returned to you", "output requests returned to you", "outputs.index"),
    "applications_returned": ("application or amendment returned for changes",
                              "applications or amendments returned for changes", "applications.index"),
    "invoices_to_issue": ("draft invoice to issue", "draft invoices to issue", "charging.invoice_list"),
}
URGENCY = tuple(WAITING)


@dataclass(frozen=True)
class Waiting:
    kind: str
    count: int
    urgent: bool = False  # jumps ahead of the usual order (a project ending within a week)

    @property
    def label(self) -> str:
        singular, plural, _ = WAITING[self.kind]
        return singular if self.count == 1 else plural

    @property
    def endpoint(self) -> str:
        return WAITING[self.kind][2]

    @property
    def query(self) -> dict[str, str]:
        return {"state": "draft"} if self.kind == "invoices_to_issue" else {}


def _item(kind: str, count: int, urgent: bool = False) -> list[Waiting]:
    return [Waiting(kind, count, urgent)] if count else []


# --- one function per role ------------------------------------------------------------------------------------

def _count(entity: type[Application] | type[Project], *conditions: ColumnElement[bool]) -> ScalarSelect[int]:
    return select(func.count()).select_from(entity).where(*conditions).scalar_subquery()


# The counting statements, built once per process for each shape the person's roles give them (SQLAlchemy keeps the
# compiled form): a request only binds the person's id, organisation and today's date.
_USER, _ORGANISATION = bindparam("user_id"), bindparam("organisation_id")
_TODAY, _NEAR, _URGENT = bindparam("today"), bindparam("near"), bindparam("urgent")


@functools.cache
def _committee_statement(sees_submitted: bool, has_organisation: bool) -> Select[tuple[int, int, int]]:
    open_to_them = (applications.can_view_application_clause(_USER, sees_submitted),
                    ~dac.is_recused_clause(_USER, _ORGANISATION if has_organisation else None))
    voted = Application.assignments.any((ReviewAssignment.reviewer_id == _USER)
                                        & ReviewAssignment.reviews.any(Review.round == Application.round))
    under_review = Application.state == AppState.UNDER_REVIEW.value
    return select(_count(Application, *open_to_them, under_review, dac.own_assignment_clause(_USER), ~voted),
                  _count(Application, *open_to_them, Application.state == AppState.SUBMITTED.value),
                  _count(Application, *open_to_them, under_review))


def _near_expiry_counts(staff: bool, led_only: bool) -> tuple[ScalarSelect[int], ScalarSelect[int]]:
    """Active projects the person may see (only those they lead, if ``led_only``) ending between today and
    NEAR_EXPIRY_DAYS ahead; and of those, the ones ending within URGENT_EXPIRY_DAYS."""
    ending = (Project.state == ProjectState.ACTIVE.value, lifecycle.can_view_project_clause(_USER, staff),
              Project.end_date.between(_TODAY, _NEAR), *((Project.lead_id == _USER,) if led_only else ()))
    return _count(Project, *ending), _count(Project, *ending, Project.end_date <= _URGENT)


@functools.cache
def _near_expiry_statement(staff: bool) -> Select[tuple[int, int]]:
    return select(*_near_expiry_counts(staff, led_only=False))


@functools.cache
def _researcher_statement(staff: bool) -> Select[tuple[int, int, int, int]]:
    """Requests returned to their author, the person's team's applications sent back for changes (a team member may
    always open their team's application: the team rule alone picks them), the projects they lead ending soon."""
    sent_back = _count(Application, Application.state == AppState.CHANGES_REQUESTED.value,
                       applications.team_member_clause(_USER))
    return select(outputs.returned_to_count(_USER).scalar_subquery(), sent_back,
                  *_near_expiry_counts(staff, led_only=True))


class Reads:
    """The counts several roles' items share, each read once per home page (a DAC chair who is also a member).

    Counted in the database, one statement per group, with the SQL forms of the services' own rules
    (``can_view_application_clause``, ``is_recused_clause``, ``can_view_project_clause``): a count never loads the
    rows it counts, and tests/integration/test_rules_in_sql.py holds each SQL form to its Python rule."""

    def __init__(self, session: Session, user: User, today: dt.date) -> None:
        self.session, self.user = session, user
        self.values = {"user_id": user.id, "organisation_id": user.organisation_id, "today": today,
                       "near": today + dt.timedelta(days=NEAR_EXPIRY_DAYS),
                       "urgent": today + dt.timedelta(days=URGENT_EXPIRY_DAYS)}

    @functools.cached_property
    def committee(self) -> tuple[int, int, int]:
        """(votes owed, submitted to assign, under review to decide) over the applications this person may see and
        is not recused from. A vote is owed on an application under review where the person has an assignment with
        no vote of this round."""
        statement = _committee_statement(applications.sees_submitted_applications(self.user),
                                         self.user.organisation_id is not None)
        owed, to_assign, to_decide = self.session.execute(statement, self.values).one()
        return owed, to_assign, to_decide

    def near_expiry(self) -> list[Waiting]:
        """Every active project this person may see that ends soon (an administrator's view)."""
        ending, urgent = self.session.execute(_near_expiry_statement(lifecycle.is_staff(self.user)),
                                              self.values).one()
        return _item("projects_near_expiry", ending, bool(urgent))

    def researcher(self) -> tuple[int, int, int, int]:
        """(returned requests, applications sent back, led projects ending soon, of which urgent)."""
        returned, sent_back, ending, urgent = self.session.execute(
            _researcher_statement(lifecycle.is_staff(self.user)), self.values).one()
        return returned, sent_back, ending, urgent


def dac_member_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """Votes this member owes: assigned, not recused, application under review, no vote of theirs this round."""
    return _item("votes_owed", reads.committee[0])


def dac_chair_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """Submitted applications to give reviewers, and those under review to decide - never one the chair is
    recused from - plus any vote the chair owes as a reviewer."""
    _owed, to_assign, to_decide = reads.committee
    return dac_member_items(reads, user, today) + (
        _item("applications_to_assign", to_assign) + _item("applications_to_decide", to_decide))


def accreditation_officer_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    return _item("accreditations_to_verify", len(list_for_officer(reads.session, user, "pending")))


_CHECKER_COUNTS = outputs.checker_counts(_USER)  # built once per process


def output_checker_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """The checker's own queue (which leaves out requests of projects they are or were on, and their own), counted in
    one statement: those they have not yet reviewed this round, and those with both reviews in that await a
    decision."""
    to_check, to_decide = reads.session.execute(_CHECKER_COUNTS, reads.values).one()
    return _item("outputs_to_check", to_check) + _item("outputs_to_decide", to_decide)


def held_extracts(session: Session, user: User) -> list[ExtractVersion]:
    """Held versions not yet released, newest of their project (only that one can be released), that this
    custodian may act on: a version they proposed waits for a second custodian, not for them; a closed or revoked
    project's versions wait for nobody."""
    rows = list(session.scalars(select(ExtractVersion).where(ExtractVersion.status == "held_for_custodian",
                                                             ExtractVersion.released_at.is_(None))
                                .order_by(ExtractVersion.built_at, ExtractVersion.id)))
    newest: dict[int, int] = {}
    for row in session.scalars(select(ExtractVersion)):
        newest[row.project_id] = max(newest.get(row.project_id, 0), row.version)
    live = set(session.scalars(select(Project.id).where(Project.state.not_in([s.value for s in FINAL_PROJECT_STATES]))))
    return [r for r in rows if r.version == newest[r.project_id] and r.release_proposed_by_id != user.id
            and r.project_id in live]


def admin_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    return _item("extracts_held", len(held_extracts(reads.session, user))) + reads.near_expiry()


def finance_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    return _item("invoices_to_issue", len(list_invoices(reads.session, user, state="draft")))


def researcher_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """Output requests returned to their author, the person's applications and amendments sent back for changes,
    and the projects they lead that end soon: all four counts in one statement."""
    returned, sent_back, ending, urgent = reads.researcher()
    return (_item("outputs_returned", returned) + _item("applications_returned", sent_back)
            + _item("projects_near_expiry", ending, bool(urgent)))


ROLE_ITEMS: dict[Role, Callable[[Reads, User, dt.date], list[Waiting]]] = {
    Role.DAC_MEMBER: dac_member_items,
    Role.LAY_MEMBER: dac_member_items,
    Role.DAC_CHAIR: dac_chair_items,
    Role.ACCREDITATION_OFFICER: accreditation_officer_items,
    Role.OUTPUT_CHECKER: output_checker_items,
    Role.ADMIN: admin_items,
    Role.FINANCE: finance_items,
    Role.RESEARCHER: researcher_items,
}
# the permission each role's items rest on: a role whose permissions were narrowed shows nothing it cannot open
_NEEDS: dict[Role, Permission] = {
    Role.DAC_MEMBER: Permission.REVIEW_APPLICATIONS, Role.LAY_MEMBER: Permission.REVIEW_APPLICATIONS,
    Role.DAC_CHAIR: Permission.CHAIR_DAC, Role.ACCREDITATION_OFFICER: Permission.VERIFY_ACCREDITATION,
    Role.OUTPUT_CHECKER: Permission.REVIEW_OUTPUTS, Role.ADMIN: Permission.RELEASE_EXTRACTS,
    Role.FINANCE: Permission.MANAGE_CHARGES, Role.RESEARCHER: Permission.VIEW_PROJECTS,
}


def waiting_for(session: Session, user: User, today: dt.date) -> list[Waiting]:
    """Everything waiting for this person over all their roles, each kind once, most urgent first."""
    found: dict[str, Waiting] = {}
    reads = Reads(session, user, today)
    for role, compute in ROLE_ITEMS.items():
        if role.value in user.roles and has_permission(user, _NEEDS[role]):
            for item in compute(reads, user, today):
                # a kind reached through two roles (an admin who also leads a project) keeps the wider count
                if item.kind not in found or item.count > found[item.kind].count:
                    found[item.kind] = item
    return sorted(found.values(), key=lambda i: (not i.urgent, URGENCY.index(i.kind)))
