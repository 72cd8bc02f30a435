"""What is waiting for a person: the counts and links their home page shows, most urgent first.

One plain function per role, each built on the services' own queries and the same per-object rules as the page
it links to (a checker never counts a request of their own project, a DAC member counts only their own votes
owed - never how many others have voted - and a recused member counts nothing). A person with several roles
sees the items of each, merged and ordered by urgency.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.charging.invoices import list_invoices
from gateway.extracts.models import ExtractVersion
from gateway.models import User
from gateway.outputs import service as outputs
from gateway.outputs.workflow import REVIEWABLE_STATES, OutputState
from gateway.permissions import Permission, Role, has_permission
from projects import applications, dac
from projects.accreditation import list_for_officer
from projects.lifecycle import list_projects
from projects.models import Application, Project
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

class Reads:
    """The lists several roles' items share, each read once per home page (a DAC chair who is also a member)."""

    def __init__(self, session: Session, user: User) -> None:
        self.session, self.user = session, user

    @functools.cached_property
    def applications_with_reviews(self) -> list[Application]:
        return applications.list_applications(self.session, self.user)

    def applications(self) -> list[Application]:
        """The person's visible applications: the committee's list if already read, else one without reviews."""
        if "applications_with_reviews" in self.__dict__:
            return self.applications_with_reviews
        return applications.list_applications(self.session, self.user, with_reviews=False)

    @functools.cached_property
    def projects(self) -> list[Project]:
        return list_projects(self.session, self.user)


def dac_member_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """Votes this member owes: assigned, not recused, application under review, no vote of theirs this round."""
    owed = 0
    for application in reads.applications_with_reviews:
        if application.state != AppState.UNDER_REVIEW or dac.is_recused(user, application):
            continue
        own = dac.assignment_of(user, application)
        if own is not None and not any(r.round == application.round for r in own.reviews):
            owed += 1
    return _item("votes_owed", owed)


def dac_chair_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """Submitted applications to give reviewers, and those under review to decide - never one the chair is
    recused from - plus any vote the chair owes as a reviewer."""
    rows = [a for a in reads.applications_with_reviews if not dac.is_recused(user, a)]
    to_assign = sum(a.state == AppState.SUBMITTED for a in rows)
    return dac_member_items(reads, user, today) + (
        _item("applications_to_assign", to_assign)
        + _item("applications_to_decide", sum(a.state == AppState.UNDER_REVIEW for a in rows)))


def accreditation_officer_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    return _item("accreditations_to_verify", len(list_for_officer(reads.session, user, "pending")))


def output_checker_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """The checker's own queue (which already leaves out their own projects' requests): those they have not yet
    reviewed this round, and those with both reviews in that await a decision."""
    queue = outputs.queue(reads.session, user)
    to_check = [r for r in queue if r.state in REVIEWABLE_STATES and outputs.own_review(user, r) is None]
    to_decide = [r for r in queue if r.state == OutputState.REVIEWED]
    return _item("outputs_to_check", len(to_check)) + _item("outputs_to_decide", len(to_decide))


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
    return _item("extracts_held", len(held_extracts(reads.session, user))) + _near_expiry(reads.projects, today)


def finance_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    return _item("invoices_to_issue", len(list_invoices(reads.session, user, state="draft")))


def researcher_items(reads: Reads, user: User, today: dt.date) -> list[Waiting]:
    """Output requests returned to their author, the person's applications and amendments sent back for changes,
    and the projects they lead that end soon."""
    returned = outputs.returned_to(reads.session, user)
    sent_back = [a for a in reads.applications()
                 if a.state == AppState.CHANGES_REQUESTED and applications.is_team_member(user, a)]
    led = [p for p in reads.projects if p.lead_id == user.id]
    return (_item("outputs_returned", returned) + _item("applications_returned", len(sent_back))
            + _near_expiry(led, today))


def _near_expiry(projects: list[Project], today: dt.date) -> list[Waiting]:
    ending = [p for p in projects if p.state == ProjectState.ACTIVE
              and today <= p.end_date <= today + dt.timedelta(days=NEAR_EXPIRY_DAYS)]
    urgent = any(p.end_date <= today + dt.timedelta(days=URGENT_EXPIRY_DAYS) for p in ending)
    return _item("projects_near_expiry", len(ending), urgent)


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
    reads = Reads(session, user)
    for role, compute in ROLE_ITEMS.items():
        if role.value in user.roles and has_permission(user, _NEEDS[role]):
            for item in compute(reads, user, today):
                # a kind reached through two roles (an admin who also leads a project) keeps the wider count
                if item.kind not in found or item.count > found[item.kind].count:
                    found[item.kind] = item
    return sorted(found.values(), key=lambda i: (not i.urgent, URGENCY.index(i.kind)))
