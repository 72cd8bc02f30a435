"""The emails that follow a domain decision, subscribed to projects' events in gateway.wiring.

Each handler queues its emails in the outbox inside the decision's transaction: if the decision rolls back,
nothing was queued; the worker delivers after the commit, with retries, so a mail server never undoes a decision.
Recipients, subjects, bodies and dedupe keys are the ones the services used to queue themselves.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.identity.accounts import users_with_roles
from gateway.models import User, UserRole
from gateway.outbox import send_email
from gateway.permissions import Role
from gateway.web.labels import day, label
from projects import events
from projects.models import Project, ProjectMember
from projects.workflow import ProjectState


def application_submitted(session: Session, event: events.ApplicationSubmitted) -> None:
    application = event.application
    for chair in users_with_roles(session, [Role.DAC_CHAIR.value]):
        send_email(session, chair.email, f"Application {application.reference} submitted",
                   f"{application.title}\n\nAssign reviewers in the London SDE gateway.",
                   dedupe_key=f"submitted:{application.id}:{application.round}:{chair.id}")


def reviewers_assigned(session: Session, event: events.ReviewersAssigned) -> None:
    application = event.application
    for reviewer in event.reviewers:
        send_email(session, reviewer.email, f"Please review {application.reference}",
                   f"You have been asked to review '{application.title}'. Declare any conflict of "
                   "interest before you read it in full.",
                   dedupe_key=f"review-request:{application.id}:{reviewer.id}")


def application_decided(session: Session, event: events.ApplicationDecided) -> None:
    application, decision = event.application, event.decision
    send_email(session, application.applicant.email, f"Decision on {application.reference}",
               f"The data access committee's decision: {label(decision.outcome)}.\n\n"
               f"{decision.conditions}\n\n{decision.message_to_applicant}".strip(),
               dedupe_key=f"decision:{decision.id}")


def project_state_changed(session: Session, event: events.ProjectStateChanged) -> None:
    project = event.project
    for member in project.members:
        send_email(session, member.user.email, f"Project {project.reference} is now {label(event.target).lower()}",
                   f"{project.title}\n\n{event.reason}",
                   dedupe_key=f"project-state:{project.id}:{event.target}:{project.state_changed_at}:"
                              f"{member.user_id}")


def security_tier_raised(session: Session, event: events.SecurityTierRaised) -> None:
    project = event.project
    for member in project.members:
        send_email(session, member.user.email, f"Project {project.reference}: high security tier",
                   f"{project.title}\n\nThe project's workspaces are now in the high security tier: no copy "
                   f"out to the clipboard, small pastes only, no terminals. Running workspaces were stopped; "
                   f"open yours again from the project page.\n\nReason: {event.reason}",
                   dedupe_key=f"project-tier:{project.id}:high:{member.user_id}")


def agreement_published(session: Session, event: events.AgreementPublished) -> None:
    """Everyone on an active project's team: they must accept the new version before they work on the data again
    (their running workspaces have just been stopped)."""
    version = event.agreement.version
    for person in session.scalars(_ON_ACTIVE_TEAMS):
        send_email(session, person.email, f"New data access agreement (version {version})",
                   "A new version of the London SDE data access agreement has been published. Read it and accept "
                   "it in the gateway (Data access agreement) before you open a workspace again: any workspace you "
                   "had running has been stopped. Your files are kept.",
                   dedupe_key=f"agreement:{version}:{person.id}")


_ON_ACTIVE_TEAMS = (select(User).where(User.is_active.is_(True), User.id.in_(
    select(ProjectMember.user_id).join(Project, Project.id == ProjectMember.project_id)
    .where(Project.state == ProjectState.ACTIVE.value))).order_by(User.id))


def _accreditation_officers(session: Session) -> list[User]:
    return list(session.scalars(select(User).join(UserRole, UserRole.user_id == User.id)
                                .where(UserRole.role == Role.ACCREDITATION_OFFICER.value,
                                       User.is_active.is_(True))))


def accreditation_recorded(session: Session, event: events.AccreditationRecorded) -> None:
    accreditation, actor = event.accreditation, event.actor
    for officer in _accreditation_officers(session):
        if officer.id != actor.id:
            send_email(session, officer.email, "An accreditation is waiting for verification",
                       f"{actor.display_name} recorded a {accreditation.level} accreditation "
                       f"({accreditation.scheme}). "
                       "Open the accreditation queue in the London SDE gateway to verify or reject it.",
                       dedupe_key=f"accreditation-{accreditation.id}-recorded-{officer.id}")


def accreditation_verified(session: Session, event: events.AccreditationVerified) -> None:
    accreditation = event.accreditation
    send_email(session, accreditation.user.email, "Your accreditation has been verified",
               f"Your accreditation ({accreditation.scheme}, number {accreditation.number}) has been verified. "
               f"It is valid until {day(accreditation.expiry_date)}.",
               dedupe_key=f"accreditation-{accreditation.id}-decided")


def accreditation_rejected(session: Session, event: events.AccreditationRejected) -> None:
    accreditation = event.accreditation
    send_email(session, accreditation.user.email, "Your accreditation was not accepted",
               f"Your accreditation ({accreditation.scheme}, number {accreditation.number}) was rejected by an "
               f"accreditation officer for this reason:\n\n{event.reason}\n\nYou can record a corrected one.",
               dedupe_key=f"accreditation-{accreditation.id}-decided")


def accreditation_expiring(session: Session, event: events.AccreditationExpiring) -> None:
    accreditation = event.accreditation
    send_email(session, accreditation.user.email, f"Your accreditation expires in {event.days_left} days",
               f"Your accreditation ({accreditation.scheme}, number {accreditation.number}) expires on "
               f"{day(accreditation.expiry_date)}. Without a valid accreditation you cannot apply for "
               "or work on projects. Record your renewed accreditation in the London SDE gateway.",
               dedupe_key=f"accreditation-{accreditation.id}-expiry-{event.threshold}")
