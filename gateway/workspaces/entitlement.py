"""Who may open a workspace for a project, derived every time from the records (never a stored flag).

Entitled means: the account is active and a researcher's, the project is active, the person is on its team,
their accreditation is valid, they have accepted the current data access agreement, the project's budget is not
exhausted, and an extract is ready. Each missing condition is reported in plain words.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from gateway.models import User
from gateway.permissions import account_data_access_problem
from projects import agreements
from projects.accreditation_rules import valid_accreditation
from projects.lifecycle import is_member
from projects.models import DataAccessAgreement, Project
from projects.workflow import ProjectState


@dataclass(frozen=True)
class Entitlement:
    reasons: list[str] = field(default_factory=list)
    agreement: DataAccessAgreement | None = None  # the current agreement, as read for the decision

    @property
    def ok(self) -> bool:
        return not self.reasons


def workspace_id(project: Project) -> str:
    """The project's id for hub server names, extract folders and Kubernetes names: its reference, lower case."""
    return project.reference.lower()


def current_extract(extracts_root: Path, project: Project) -> Path | None:
    """The live extract version folder, resolved (so a later refresh does not move a running workspace)."""
    pointer = extracts_root / workspace_id(project) / "current"
    if not pointer.exists():
        return None
    return pointer.resolve()


def has_accepted_current_agreement(session: Session, user: User) -> bool:
    return agreements.current_and_accepted(session, user)[1]


def budget_reason(session: Session, project: Project) -> str | None:
    """Why the budget stops new sessions, if it does (charging may not be installed yet on old data)."""
    try:
        from gateway.charging.budget import check_budget
    except ImportError:
        return None
    from gateway.errors import Conflict

    try:
        check_budget(session, project, "workspace")
    except Conflict as exc:
        return exc.message
    return None


NOT_ACCEPTED = "You have not accepted the current data access agreement."  # the project page links to it


def project_and_team_reasons(user: User, project: Project) -> list[str]:
    """The project is active and the person on its team (the parts of the entitlement a suspension, revocation,
    closure, expiry or removal from the team takes away), each missing one in plain words."""
    reasons: list[str] = []
    if (problem := account_data_access_problem(user)) is not None:
        reasons.append(problem)
    if project.state != ProjectState.ACTIVE:
        reasons.append(f"The project is {project.state}.")
    if not is_member(user, project):
        reasons.append("You are not on this project's team.")
    return reasons


def entitlement(session: Session, user: User, project: Project, extracts_root: Path,
                today: dt.date | None = None) -> Entitlement:
    day = today or dt.datetime.now(dt.UTC).date()
    reasons = project_and_team_reasons(user, project)
    if valid_accreditation(session, user, day) is None:
        reasons.append("Your accreditation is missing or has lapsed.")
    agreement, accepted = agreements.current_and_accepted(session, user)
    if not accepted:
        reasons.append(NOT_ACCEPTED)
    if (reason := budget_reason(session, project)) is not None:
        reasons.append(reason)
    if current_extract(extracts_root, project) is None:
        reasons.append("The project's data extract is not ready yet.")
    return Entitlement(reasons, agreement)
