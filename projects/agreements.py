"""The data access agreement: versioned terms; submitting an application accepts the current version.

The current version is the newest. Publishing one emits AgreementPublished: the running workspaces of everyone who has
not accepted it stop (gateway.wiring), and the entitlement refuses a workspace until they accept it. A workspace start
and a publication serialise on the newest version's row (``lock_current``), so a start either commits before the
publication looks for running workspaces, or sees the new version.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.errors import ValidationError
from gateway.models import User
from gateway.permissions import Permission, check_permission
from projects import events
from projects.models import AgreementAcceptance, DataAccessAgreement

DEFAULT_TEXT = """\
1. I will use the data only for the approved project, by the approved people, in the secure workspace.
2. I will not try to identify any person, or link the data with other data, except as approved.
3. Nothing leaves the workspace except through an output request checked by two output checkers.
4. I will report any suspected breach to the London SDE service desk at once.
5. I accept that every action is recorded, and that access ends when the project ends or is suspended.
"""


def current(session: Session) -> DataAccessAgreement | None:
    return session.scalar(select(DataAccessAgreement).order_by(DataAccessAgreement.version.desc()).limit(1))


_NEWEST = select(DataAccessAgreement.version).order_by(DataAccessAgreement.version.desc()).limit(1)


def lock_current(session: Session, *, exclusive: bool) -> int | None:
    """Lock the current (newest) version's row to the end of the transaction, ``exclusive`` to publish the next
    version, shared to record a workspace session; returns its number (None if none is published). Each later
    statement reads the versions afresh: one published while this waited is seen, and then locked instead. SQLite
    runs one writer at a time and takes no row lock."""
    while True:
        locked = session.scalar(_NEWEST.with_for_update(read=not exclusive))
        newest = session.scalar(_NEWEST)
        if locked == newest:
            return newest


_CURRENT_AND_ACCEPTED = (select(DataAccessAgreement, AgreementAcceptance.id)
                         .outerjoin(AgreementAcceptance,
                                    and_(AgreementAcceptance.version == DataAccessAgreement.version,
                                         AgreementAcceptance.user_id == bindparam("user_id")))
                         .order_by(DataAccessAgreement.version.desc()).limit(1))  # built once per process


def current_and_accepted(session: Session, user: User) -> tuple[DataAccessAgreement | None, bool]:
    """The current agreement and whether this person has accepted that version, in one statement."""
    row = session.execute(_CURRENT_AND_ACCEPTED, {"user_id": user.id}).first()
    if row is None:
        return None, False
    return row[0], row[1] is not None


def publish(session: Session, actor: User | str, text: str) -> DataAccessAgreement:
    """A new version: applications submitted from now on must accept it, and so must everyone before they work on the
    data again (their running workspaces are stopped, through AgreementPublished)."""
    if isinstance(actor, User):
        check_permission(actor, Permission.MANAGE_AGREEMENTS)
    text = text.strip()
    if len(text) < 20:
        raise ValidationError("The agreement could not be published.",
                              field_errors={"text": ["Enter the full text of the agreement."]})
    # Held to the commit: a workspace being recorded meanwhile waits and then sees this version, and a second
    # publication waits and takes the next number.
    lock_current(session, exclusive=True)
    latest = current(session)
    agreement = DataAccessAgreement(version=(latest.version + 1) if latest else 1, text=text,
                                    published_by_id=actor.id if isinstance(actor, User) else None)
    session.add(agreement)
    session.flush()
    audit.record(session, actor, "agreement.published", "data_access_agreement", agreement.version)
    events.emit(session, events.AgreementPublished(agreement, actor))  # running workspaces stop (gateway.wiring)
    return agreement


def accept(session: Session, user: User, version: int) -> None:
    """Record that ``user`` accepted ``version`` (which must be the current one). Repeating it is harmless."""
    from projects.models import AgreementAcceptance

    latest = current(session)
    if latest is None or latest.version != version:
        raise ValidationError("The agreement could not be accepted.", field_errors={
            "version": ["A newer version of the agreement has been published: read it and accept that one."]})
    exists = session.scalar(select(AgreementAcceptance).where(AgreementAcceptance.user_id == user.id,
                                                              AgreementAcceptance.version == version))
    if exists is None:
        session.add(AgreementAcceptance(user_id=user.id, version=version))
        session.flush()
        audit.record(session, user, "agreement.accepted", "data_access_agreement", version)


def ensure_default(session: Session, actor: User | str) -> DataAccessAgreement:
    return current(session) or publish(session, actor, DEFAULT_TEXT)
