"""The composition root: which layer acts on which domain event, and which jobs the worker runs daily.

projects/ decides and emits events (projects.events); extracts, workspaces, charging and the emails that follow
a decision (gateway.notifications) act on them here, in the emitter's transaction. Importing this module also
loads every module that registers an outbox handler (extracts, workspaces, output checks and release). Every
entry point calls ``wire()`` once before it serves or runs anything: create_app (web and API), the ``sde``
command group and the worker. Reading this file answers "what happens when a project is approved, amended,
leaves the active state (or comes back to it) or has its tier raised, or a new data access agreement is published",
and who is emailed about it.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

import gateway.outputs.checks  # registers the automatic output checks (outbox)
import gateway.outputs.release  # noqa: F401 - registers the release of approved outputs (outbox)
from gateway import notifications, outbox
from gateway.charging.approval import freeze_quote
from gateway.charging.jobs import daily_charging
from gateway.charging.tariff import tariff_in_force
from gateway.extracts.service import request_build
from gateway.outputs.release import requeue_held
from gateway.workspaces.service import (
    stop_member_workspaces,
    stop_project_workspaces,
    stop_workspaces_without_agreement,
)
from projects import events, scheduled, tariff
from projects.workflow import ProjectState

_lock = threading.Lock()
_wired = False


def build_first_extract(session: Session, event: events.ProjectCreated) -> None:
    request_build(session, event.project, "project approved", event.actor)


def rebuild_extract_after_amendment(session: Session, event: events.ProjectAmended) -> None:
    """Only an active project gets a new extract (an expired one extended by the amendment is active again)."""
    if event.project.state == ProjectState.ACTIVE:
        request_build(session, event.project, f"amendment {event.amendment.reference} approved", event.actor)


def stop_workspaces_leaving_active(session: Session, event: events.ProjectStateChanged) -> None:
    if event.previous == ProjectState.ACTIVE:
        stop_project_workspaces(session, event.project, f"project {event.target}: {event.reason}")


def destroy_key_when_closed(session: Session, event: events.ProjectStateChanged) -> None:
    """Closing or revoking destroys the pseudonym key (by the worker, which holds the key files)."""
    if event.target in (ProjectState.CLOSED, ProjectState.REVOKED):
        outbox.enqueue(session, "extract.destroy_key", {"project_id": event.project.id},
                       dedupe_key=f"destroy-key:{event.project.id}")


def release_held_outputs(session: Session, event: events.ProjectStateChanged) -> None:
    """A project active again (reinstated or extended), or reinstated after its end date (expired), releases what
    was approved while it was held."""
    if event.target == ProjectState.ACTIVE or (event.previous == ProjectState.SUSPENDED
                                               and event.target == ProjectState.EXPIRED):
        requeue_held(session, event.project.id, f"{event.previous}-{event.project.state_changed_at.isoformat()}")


def stop_workspaces_for_high_tier(session: Session, event: events.SecurityTierRaised) -> None:
    stop_project_workspaces(session, event.project, f"security tier raised to high: {event.reason}")


def stop_removed_members_workspaces(session: Session, event: events.MembersRemoved) -> None:
    stop_member_workspaces(session, event.project, set(event.user_ids), event.reason)


def stop_workspaces_of_those_not_accepting(session: Session, event: events.AgreementPublished) -> None:
    """Nobody has accepted a version just published: every running workspace stops until its person accepts it."""
    stop_workspaces_without_agreement(session, event.agreement)


def freeze_approved_quote(session: Session, event: events.ApplicationApproved) -> None:
    freeze_quote(session, event.actor, event.application, event.project, event.today)


def charging(session: Session, on: dt.date) -> None:
    """Meter seats, compute and annual reviews; invoice the previous month once (gateway.charging.jobs)."""
    daily_charging(session, on)


DAILY_JOBS: list[Callable[[Session, dt.date], None]] = [*scheduled.JOBS, charging]


def wire() -> None:
    """Subscribe every layer's handlers to the domain events, once per process."""
    global _wired
    with _lock:
        if _wired:
            return
        subscribe = events.SUBSCRIBERS.subscribe
        subscribe(events.ProjectCreated, build_first_extract)
        subscribe(events.ProjectAmended, rebuild_extract_after_amendment)
        subscribe(events.ProjectStateChanged, stop_workspaces_leaving_active)
        subscribe(events.ProjectStateChanged, destroy_key_when_closed)
        subscribe(events.ProjectStateChanged, release_held_outputs)
        subscribe(events.SecurityTierRaised, stop_workspaces_for_high_tier)
        subscribe(events.ApplicationApproved, freeze_approved_quote)
        subscribe(events.MembersRemoved, stop_removed_members_workspaces)
        subscribe(events.AgreementPublished, stop_workspaces_of_those_not_accepting)
        # The emails that follow a decision, queued after the decision's other side effects.
        subscribe(events.ProjectStateChanged, notifications.project_state_changed)
        subscribe(events.SecurityTierRaised, notifications.security_tier_raised)
        subscribe(events.AgreementPublished, notifications.agreement_published)
        subscribe(events.ApplicationSubmitted, notifications.application_submitted)
        subscribe(events.ReviewersAssigned, notifications.reviewers_assigned)
        subscribe(events.ApplicationDecided, notifications.application_decided)
        subscribe(events.AccreditationRecorded, notifications.accreditation_recorded)
        subscribe(events.AccreditationVerified, notifications.accreditation_verified)
        subscribe(events.AccreditationRejected, notifications.accreditation_rejected)
        subscribe(events.AccreditationExpiring, notifications.accreditation_expiring)
        tariff.find_tariff_in_force_with(tariff_in_force)  # the application's maximum term reads it
        _wired = True
