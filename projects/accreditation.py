"""Safe people: researchers record accreditations, accreditation officers verify or reject them.

Validity (verified and not expired) is derived by :mod:`projects.accreditation_rules`, never stored.
Verified and rejected are final for a record; a researcher renews by recording a new one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, object_session

from gateway import audit
from gateway.db import on_rollback, utcnow
from gateway.errors import InvalidTransition, NotFound, ValidationError
from gateway.models import User
from gateway.permissions import (
    Permission,
    can_view_accreditation,
    check_can_decide_accreditation,
    check_can_view_accreditation,
    check_permission,
)
from projects import dates, events
from projects.accreditation_rules import supervision_problem, today, valid_accreditation
from projects.certificates import CertificateStore, CheckedCertificate, Upload, check_certificate
from projects.models import Accreditation

SCHEMES: tuple[str, ...] = (
    "ONS Accredited Researcher (Digital Economy Act)",
    "UK Data Service Safe Researcher Training",
)
OTHER_SCHEME = "Other"
LEVELS: dict[str, str] = {"full": "Full", "provisional": "Provisional (supervised)"}
STATUSES: tuple[str, ...] = ("pending", "verified", "rejected")
REMINDER_DAYS: tuple[int, ...] = (30, 7)  # widest first
SCHEDULER = "scheduler"


@dataclass(frozen=True)
class AccreditationInput:
    """What a researcher states; every field is checked and every problem reported at once."""

    scheme: str
    level: str
    number: str
    training_date: dt.date | None
    expiry_date: dt.date | None
    other_scheme: str = ""
    supervisor_username: str = ""


# --- pure rules ----------------------------------------------------------------------------------

def date_problems(training: dt.date | None, expiry: dt.date | None, on: dt.date) -> dict[str, list[str]]:
    """Training happened (not in the future, not before 1900); expiry is after training, not already past and
    within ten years."""
    errors: dict[str, list[str]] = {}
    if training is None:
        errors["training_date"] = ["Enter the date of your training."]
    elif training > on:
        errors["training_date"] = ["The training date must be today or in the past."]
    elif problem := dates.outside(training):
        errors["training_date"] = [problem]
    if expiry is None:
        errors["expiry_date"] = ["Enter the expiry date."]
    elif expiry < on:
        errors["expiry_date"] = ["The expiry date is in the past: record a current accreditation."]
    elif expiry > dates.latest_accreditation_expiry(on):
        errors["expiry_date"] = [f"An accreditation lasts {dates.ACCREDITATION_MAX_YEARS} years at most: enter a "
                                 f"date on or before {dates.long(dates.latest_accreditation_expiry(on))}."]
    elif training is not None and expiry <= training:
        errors["expiry_date"] = ["The expiry date must be after the training date."]
    return errors


def scheme_name(data: AccreditationInput) -> tuple[str | None, dict[str, list[str]]]:
    if data.scheme in SCHEMES:
        return data.scheme, {}
    if data.scheme == OTHER_SCHEME:
        other = " ".join(data.other_scheme.split())
        if not other:
            return None, {"other_scheme": ["Enter the name of the accreditation scheme."]}
        if len(other) > 200:
            return None, {"other_scheme": ["The scheme name must be 200 characters or fewer."]}
        return other, {}
    return None, {"scheme": ["Choose the accreditation scheme."]}


def long_date(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


def status_text(accreditation: Accreditation, on: dt.date | None = None) -> str:
    """What a person reads: pending, rejected, valid until a date, or expired on a date."""
    if accreditation.status == "pending":
        return "Waiting for verification"
    if accreditation.status == "rejected":
        return "Rejected"
    day = long_date(accreditation.expiry_date)
    if accreditation.expiry_date < (on or today()):
        return f"Expired on {day}"
    session = object_session(accreditation)
    unsupervised = supervision_problem(session, accreditation, on) if session is not None else None
    return f"Not valid: {unsupervised}" if unsupervised else f"Valid until {day}"


# --- queries -------------------------------------------------------------------------------------

def get_accreditation(session: Session, actor: User, accreditation_id: int) -> Accreditation:
    """The record, if it exists and the actor may see it; someone else's answers exactly like a missing one."""
    accreditation = session.get(Accreditation, accreditation_id)
    if accreditation is None or not can_view_accreditation(actor, accreditation):
        raise NotFound("No such accreditation.")
    return accreditation


def list_mine(session: Session, actor: User) -> list[Accreditation]:
    return list(session.scalars(select(Accreditation).where(Accreditation.user_id == actor.id)
                                .order_by(Accreditation.created_at.desc(), Accreditation.id.desc())))


def list_for_officer(session: Session, actor: User, status: str | None = "pending") -> list[Accreditation]:
    """The officer's queue (pending, oldest first) or the records with another status (newest first)."""
    check_permission(actor, Permission.VERIFY_ACCREDITATION)
    query = select(Accreditation)
    if status is not None:
        if status not in STATUSES:
            raise ValidationError("The request is not valid.",
                                  field_errors={"status": [f"Choose one of: {', '.join(STATUSES)}."]})
        query = query.where(Accreditation.status == status)
    order = (Accreditation.created_at, Accreditation.id) if status == "pending" else (
        Accreditation.created_at.desc(), Accreditation.id.desc())
    return list(session.scalars(query.order_by(*order)))


def eligible_supervisors(session: Session, researcher: User, on: dt.date | None = None) -> list[User]:
    """Colleagues at the same organisation holding a valid full accreditation."""
    if researcher.organisation_id is None:
        return []
    colleagues = session.scalars(select(User).where(User.organisation_id == researcher.organisation_id,
                                                    User.id != researcher.id, User.is_active.is_(True))
                                 .order_by(User.display_name))
    return [c for c in colleagues if _holds_valid_full(session, c, on)]


def _holds_valid_full(session: Session, user: User, on: dt.date | None) -> bool:
    best = valid_accreditation(session, user, on)  # prefers full over provisional
    return best is not None and best.level == "full"


def supervisor_problem(session: Session, researcher: User, username: str, on: dt.date) -> tuple[User | None, str]:
    username = username.strip().lower()
    if not username:
        return None, "Enter the username of your supervisor."
    supervisor = session.scalar(select(User).where(User.username == username))
    if supervisor is None or not supervisor.is_active:
        return None, f"There is no active account with the username '{username}'."
    if supervisor.id == researcher.id:
        return None, "You cannot supervise yourself."
    if researcher.organisation_id is None:
        return None, ("You do not belong to an organisation yet, so nobody can supervise you. "
                      "Ask an administrator to add you to your organisation.")
    if supervisor.organisation_id != researcher.organisation_id:
        return None, f"{supervisor.display_name} is not at your organisation; your supervisor must be."
    if not _holds_valid_full(session, supervisor, on):
        return None, f"{supervisor.display_name} does not hold a valid full accreditation, so cannot supervise."
    return supervisor, ""


# --- commands ------------------------------------------------------------------------------------

def record_accreditation(session: Session, actor: User, store: CertificateStore, data: AccreditationInput,
                         certificate: Upload | None, *, on: dt.date | None = None) -> Accreditation:
    """A researcher records an accreditation with its certificate; it waits for an officer."""
    check_permission(actor, Permission.RECORD_ACCREDITATION)
    day = on or today()
    scheme, errors = scheme_name(data)
    if data.level not in LEVELS:
        errors["level"] = ["Choose full or provisional."]
    number = data.number.strip()
    if not number:
        errors["number"] = ["Enter the accreditation or certificate number."]
    elif len(number) > 100:
        errors["number"] = ["The number must be 100 characters or fewer."]
    errors.update(date_problems(data.training_date, data.expiry_date, day))
    supervisor: User | None = None
    if data.level == "provisional":
        supervisor, problem = supervisor_problem(session, actor, data.supervisor_username, day)
        if problem:
            errors["supervisor"] = [problem]
    checked: CheckedCertificate | str = (check_certificate(certificate) if certificate is not None
                                         else "Upload your certificate (PDF or PNG).")
    if isinstance(checked, str):
        errors["certificate"] = [checked]
    if errors:
        raise ValidationError("The accreditation could not be recorded.", field_errors=errors)
    assert scheme is not None and data.training_date and data.expiry_date and not isinstance(checked, str)
    stored = store.save(checked)
    on_rollback(session, lambda: store.discard(stored))  # no record, no file
    accreditation = Accreditation(
        user_id=actor.id, scheme=scheme, level=data.level, number=number, training_date=data.training_date,
        expiry_date=data.expiry_date, supervisor_id=supervisor.id if supervisor else None,
        certificate_file=stored, certificate_name=checked.display_name, certificate_type=checked.content_type,
        certificate_sha256=checked.sha256, status="pending")
    session.add(accreditation)
    session.flush()
    audit.record(session, actor, "accreditation.recorded", "accreditation", accreditation.id, {
        "user": actor.username, "scheme": scheme, "level": data.level, "number": number,
        "training_date": data.training_date.isoformat(), "expiry_date": data.expiry_date.isoformat(),
        "supervisor": supervisor.username if supervisor else None,
        "certificate_sha256": checked.sha256, "certificate_type": checked.content_type})
    events.emit(session, events.AccreditationRecorded(accreditation, actor))  # officers are emailed
    return accreditation


def _check_pending(session: Session, accreditation: Accreditation) -> None:
    """Judged on the record as committed, under its row lock: two officers (or one officer's two tabs) each decided
    on what they had read, and the later decision overwrote the earlier, final one."""
    session.flush()
    session.refresh(accreditation, with_for_update=True)
    if accreditation.status != "pending":
        raise InvalidTransition(f"This accreditation has already been {accreditation.status}; that decision is "
                                "final. The researcher records a new accreditation to renew or correct it.")


def verify_accreditation(session: Session, actor: User, accreditation: Accreditation, *,
                         on: dt.date | None = None) -> None:
    check_can_decide_accreditation(actor, accreditation)
    _check_pending(session, accreditation)
    if accreditation.expiry_date < (on or today()):
        raise InvalidTransition(f"This accreditation expired on {accreditation.expiry_date.isoformat()}, so it "
                                "cannot be verified. Reject it and ask the researcher to record a current one.")
    if (problem := supervision_problem(session, accreditation, on)) is not None:
        raise InvalidTransition(f"This provisional accreditation cannot be verified: {problem}. Reject it and ask the "
                                "researcher to record one with a current supervisor.")
    accreditation.status = "verified"
    accreditation.decided_by_id = actor.id
    accreditation.decided_at = utcnow()
    session.flush()
    audit.record(session, actor, "accreditation.verified", "accreditation", accreditation.id,
                 {"user_id": accreditation.user_id, "expiry_date": accreditation.expiry_date.isoformat()})
    events.emit(session, events.AccreditationVerified(accreditation))  # the holder is emailed


def reject_accreditation(session: Session, actor: User, accreditation: Accreditation, reason: str) -> None:
    check_can_decide_accreditation(actor, accreditation)
    _check_pending(session, accreditation)
    reason = reason.strip()
    if not reason:
        raise ValidationError("Give a reason for rejecting.",
                              field_errors={"reason": ["Explain to the researcher why the record is rejected."]})
    if len(reason) > 2000:
        raise ValidationError("The reason is too long.",
                              field_errors={"reason": ["The reason must be 2,000 characters or fewer."]})
    accreditation.status = "rejected"
    accreditation.decided_by_id = actor.id
    accreditation.decided_at = utcnow()
    accreditation.decision_reason = reason
    session.flush()
    audit.record(session, actor, "accreditation.rejected", "accreditation", accreditation.id,
                 {"user_id": accreditation.user_id, "reason": reason})
    events.emit(session, events.AccreditationRejected(accreditation, reason))  # the holder is emailed


def read_certificate(session: Session, actor: User, store: CertificateStore,
                     accreditation: Accreditation) -> tuple[bytes, str, str]:
    """The certificate's bytes, its (sniffed) type and a safe download name."""
    check_can_view_accreditation(actor, accreditation)
    data = store.read(accreditation.certificate_file or "")
    if data is None or accreditation.certificate_type is None:
        raise NotFound("The certificate file for this accreditation is missing from storage.")
    extension = ".pdf" if accreditation.certificate_type == "application/pdf" else ".png"
    return data, accreditation.certificate_type, f"accreditation-{accreditation.id}-certificate{extension}"


# --- reminders -----------------------------------------------------------------------------------

def queue_expiry_reminders(session: Session, on: dt.date) -> int:
    """Email holders of verified accreditations that have come within 30 or 7 days of expiry.

    One email per threshold per record (the tightest threshold reached; a record first seen inside
    7 days gets only the 7-day email). Idempotent: the ``reminded_*_at`` columns and the outbox
    dedupe keys both stop repeats. Someone who already holds another accreditation valid beyond
    this one's expiry is not reminded.
    """
    widest = max(REMINDER_DAYS)
    candidates = session.scalars(select(Accreditation).where(
        Accreditation.status == "verified", Accreditation.expiry_date >= on,
        Accreditation.expiry_date <= on + dt.timedelta(days=widest),
        or_(Accreditation.reminded_30_at.is_(None), Accreditation.reminded_7_at.is_(None)))
        .order_by(Accreditation.id))
    sent = 0
    for accreditation in candidates:
        days_left = (accreditation.expiry_date - on).days
        due = [d for d in REMINDER_DAYS if days_left <= d and _reminded_at(accreditation, d) is None]
        if not due:
            continue
        renewed = valid_accreditation(session, accreditation.user, accreditation.expiry_date + dt.timedelta(days=1))
        if renewed is not None:
            continue
        threshold = min(due)
        now = utcnow()
        for d in REMINDER_DAYS:
            if d >= threshold and _reminded_at(accreditation, d) is None:
                _set_reminded(accreditation, d, now)
        events.emit(session, events.AccreditationExpiring(accreditation, days_left, threshold))  # holder emailed
        audit.record(session, SCHEDULER, "accreditation.expiry_reminder_sent", "accreditation", accreditation.id,
                     {"user_id": accreditation.user_id, "threshold_days": threshold, "days_left": days_left,
                      "emailed": accreditation.user.email is not None})
        sent += 1
    session.flush()
    return sent


def send_expiry_reminders(session: Session, on: dt.date) -> None:
    """The scheduled job (see projects.scheduled): queue today's expiry reminders."""
    queue_expiry_reminders(session, on)


def _reminded_at(accreditation: Accreditation, days: int) -> dt.datetime | None:
    return accreditation.reminded_30_at if days == 30 else accreditation.reminded_7_at


def _set_reminded(accreditation: Accreditation, days: int, when: dt.datetime) -> None:
    if days == 30:
        accreditation.reminded_30_at = when
    else:
        accreditation.reminded_7_at = when
