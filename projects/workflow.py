"""The state machines of applications and projects: one transition table each, with an owner per state.

Services never assign ``state`` directly; they call :func:`move`, which refuses any transition not in
the table. The Mermaid diagrams in docs/ are generated from these tables (`sde docs diagrams`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from gateway.errors import Conflict, InvalidTransition


class AppState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    CHANGES_REQUESTED = "changes_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class ProjectState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"
    EXPIRED = "expired"
    REVOKED = "revoked"


# (from, to) -> the command that makes it
APPLICATION_TRANSITIONS: dict[tuple[AppState, AppState], str] = {
    (AppState.DRAFT, AppState.SUBMITTED): "submit",
    (AppState.DRAFT, AppState.WITHDRAWN): "withdraw",
    (AppState.SUBMITTED, AppState.UNDER_REVIEW): "assign reviewers",
    (AppState.SUBMITTED, AppState.WITHDRAWN): "withdraw",
    (AppState.UNDER_REVIEW, AppState.APPROVED): "approve",
    (AppState.UNDER_REVIEW, AppState.REJECTED): "reject",
    (AppState.UNDER_REVIEW, AppState.CHANGES_REQUESTED): "request changes",
    (AppState.UNDER_REVIEW, AppState.WITHDRAWN): "withdraw",
    (AppState.CHANGES_REQUESTED, AppState.SUBMITTED): "resubmit",
    (AppState.CHANGES_REQUESTED, AppState.WITHDRAWN): "withdraw",
}

# Who acts in each state. Final states have nobody to act.
APPLICATION_OWNERS: dict[AppState, str] = {
    AppState.DRAFT: "applicant",
    AppState.SUBMITTED: "DAC chair",
    AppState.UNDER_REVIEW: "DAC reviewers, then the DAC chair",
    AppState.CHANGES_REQUESTED: "applicant",
    AppState.APPROVED: "final",
    AppState.REJECTED: "final",
    AppState.WITHDRAWN: "final",
}

PROJECT_TRANSITIONS: dict[tuple[ProjectState, ProjectState], str] = {
    (ProjectState.ACTIVE, ProjectState.SUSPENDED): "suspend",
    (ProjectState.SUSPENDED, ProjectState.ACTIVE): "reinstate",
    (ProjectState.ACTIVE, ProjectState.REVOKED): "revoke",
    (ProjectState.SUSPENDED, ProjectState.REVOKED): "revoke",
    (ProjectState.ACTIVE, ProjectState.CLOSED): "close",
    (ProjectState.SUSPENDED, ProjectState.CLOSED): "close",
    (ProjectState.ACTIVE, ProjectState.EXPIRED): "expire",
    (ProjectState.SUSPENDED, ProjectState.EXPIRED): "reinstate after the end date",
    (ProjectState.EXPIRED, ProjectState.ACTIVE): "extend",
}

PROJECT_OWNERS: dict[ProjectState, str] = {
    ProjectState.ACTIVE: "project lead (close), administrator (suspend, revoke), the system (expire)",
    ProjectState.SUSPENDED: "administrator (reinstate, revoke, close)",
    ProjectState.EXPIRED: "the DAC, through an approved extension",
    ProjectState.CLOSED: "final",
    ProjectState.REVOKED: "final",
}

FINAL_APPLICATION_STATES = frozenset(s for s, owner in APPLICATION_OWNERS.items() if owner == "final")
FINAL_PROJECT_STATES = frozenset(s for s, owner in PROJECT_OWNERS.items() if owner == "final")


def check_move(transitions: Mapping[tuple[Any, Any], str], current: str, target: StrEnum, what: str) -> None:
    """Refuse any move that is not in the workflow's table (the caller then changes nothing)."""
    if (type(target)(current), target) not in transitions:
        raise InvalidTransition(f"{what} that is {current.replace('_', ' ')} cannot be moved to "
                                f"{target.value.replace('_', ' ')}.")


def check_round(what: str, current: int, seen: int | None, again: str) -> None:
    """Refuse an action sent from a page (or an API read) of another round than the current one.

    ``what`` names the thing ("This request"), ``seen`` is the round the form was rendered for (None: the caller did
    not say, as an API client may not; 0: a form that carries no round, from a page older than the field), ``again``
    what to do once the current round is read ("decide"). Called under the row's lock, before anything changes.
    """
    if seen is None or seen == current:
        return
    if 1 <= seen < current:
        raise Conflict(f"{what} has been resubmitted since you opened it: it is now in round {current}. Nothing was "
                       f"recorded; read round {current} and {again} again.")
    raise Conflict(f"This page is out of date: {what[0].lower()}{what[1:]} is in round {current}. Nothing was "
                   f"recorded; reload the page, read round {current} and {again} again.")


def check_application_move(current: str, target: AppState) -> None:
    check_move(APPLICATION_TRANSITIONS, current, target, "An application")


def check_project_move(current: str, target: ProjectState) -> None:
    check_move(PROJECT_TRANSITIONS, current, target, "A project")


def mermaid(transitions: dict[tuple[StrEnum, StrEnum], str], initial: StrEnum) -> str:
    """A Mermaid state diagram of a transition table, for the docs."""
    lines = ["stateDiagram-v2", f"    [*] --> {initial.value}"]
    for (source, target), command in transitions.items():
        lines.append(f"    {source.value} --> {target.value}: {command}")
    finals = {t for (_, t) in transitions} - {s for (s, _) in transitions}
    lines.extend(f"    {state.value} --> [*]" for state in sorted(finals, key=str))
    return "\n".join(lines)
