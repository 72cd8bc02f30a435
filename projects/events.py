"""Domain events: what projects/ decided, for the layers above it to act on.

projects/ never calls extracts, workspaces, charging or the mail outbox. A decision emits one of these events and the
composition root (gateway.wiring) subscribes those layers' handlers to it. Handlers run at once, in the
emitter's session: if one raises, the decision, its audit rows and every other handler's changes roll back
together. A handler with slow work queues it through the outbox instead of doing it here.

An event nobody subscribed to is an error, not a silent no-op: it means an entry point forgot to call
``gateway.wiring.wire()``, and the side effects of the decision would otherwise be lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from gateway.models import User
from projects.models import Accreditation, Application, DataAccessAgreement, Decision, Project


@dataclass(frozen=True)
class ProjectCreated:
    """The DAC approved a new application and its project exists (its first extract is due)."""

    project: Project
    actor: User | str


@dataclass(frozen=True)
class ProjectAmended:
    """An approved amendment changed the project (an active project's extract is due again)."""

    project: Project
    amendment: Application
    actor: User | str


@dataclass(frozen=True)
class ProjectStateChanged:
    """The project moved between states (suspended, revoked, closed, expired, reinstated, extended)."""

    project: Project
    previous: str
    target: str
    reason: str


@dataclass(frozen=True)
class SecurityTierRaised:
    """An administrator moved the project to the high security tier (running workspaces must restart)."""

    project: Project
    reason: str


@dataclass(frozen=True)
class ApplicationApproved:
    """The DAC approved an application (new or amendment); ``project`` is the project it created or changed."""

    application: Application
    project: Project
    actor: User | str
    today: dt.date


@dataclass(frozen=True)
class MembersRemoved:
    """An amendment took people off the project team (their running workspaces must stop, their access end)."""

    project: Project
    user_ids: frozenset[int]
    reason: str


@dataclass(frozen=True)
class AgreementPublished:
    """A new version of the data access agreement is current: nobody has accepted it yet, and nobody may work on the
    data until they do (running workspaces must stop)."""

    agreement: DataAccessAgreement
    actor: User | str


@dataclass(frozen=True)
class ApplicationSubmitted:
    """The applicant submitted (or resubmitted) an application to the DAC."""

    application: Application


@dataclass(frozen=True)
class ReviewersAssigned:
    """The chair asked DAC members to review an application; ``reviewers`` are the ones newly asked."""

    application: Application
    reviewers: tuple[User, ...]


@dataclass(frozen=True)
class ApplicationDecided:
    """The chair recorded the DAC's decision (any outcome) on an application."""

    application: Application
    decision: Decision


@dataclass(frozen=True)
class AccreditationRecorded:
    """A researcher recorded an accreditation; it waits for an accreditation officer."""

    accreditation: Accreditation
    actor: User


@dataclass(frozen=True)
class AccreditationVerified:
    """An accreditation officer verified an accreditation."""

    accreditation: Accreditation


@dataclass(frozen=True)
class AccreditationRejected:
    """An accreditation officer rejected an accreditation, giving a reason."""

    accreditation: Accreditation
    reason: str


@dataclass(frozen=True)
class AccreditationExpiring:
    """A verified accreditation came within ``threshold`` days of expiry and its holder is to be reminded."""

    accreditation: Accreditation
    days_left: int
    threshold: int


EVENT_TYPES: tuple[type, ...] = (ProjectCreated, ProjectAmended, ProjectStateChanged, SecurityTierRaised,
                                 ApplicationApproved, MembersRemoved, AgreementPublished, ApplicationSubmitted,
                                 ReviewersAssigned, ApplicationDecided, AccreditationRecorded, AccreditationVerified,
                                 AccreditationRejected, AccreditationExpiring)

E = TypeVar("E")
Handler = Callable[[Session, Any], None]


class NotWired(RuntimeError):
    """An event was emitted with no subscriber: the entry point did not call gateway.wiring.wire()."""


class Subscribers:
    """Handlers per event type, called in the order they were subscribed."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = {}

    def subscribe(self, event_type: type[E], handler: Callable[[Session, E], None]) -> None:
        if event_type not in EVENT_TYPES:
            raise TypeError(f"{event_type.__name__} is not a domain event (projects.events.EVENT_TYPES).")
        self._handlers.setdefault(event_type, []).append(handler)

    def unsubscribe(self, event_type: type[E], handler: Callable[[Session, E], None]) -> None:
        self._handlers[event_type].remove(handler)

    def handlers(self, event_type: type) -> tuple[Handler, ...]:
        return tuple(self._handlers.get(event_type, ()))

    def emit(self, session: Session, event: object) -> None:
        handlers = self._handlers.get(type(event))
        if not handlers:
            raise NotWired(f"No subscriber for {type(event).__name__}: call gateway.wiring.wire() at start-up.")
        for handler in list(handlers):
            handler(session, event)


# The one registry of the process; filled by gateway.wiring.wire() and nothing else.
SUBSCRIBERS = Subscribers()


def emit(session: Session, event: object) -> None:
    """Run every subscriber of this event now, in ``session``'s transaction (an exception rolls all back)."""
    SUBSCRIBERS.emit(session, event)
