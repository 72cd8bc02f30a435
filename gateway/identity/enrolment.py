"""Proof of a second channel before an authenticator is bound to an account.

A password alone (phished from the directory, a temporary one intercepted, or any account after an administrator
reset its second factor) must not be enough to set up a new authenticator, or whoever holds it owns the account. So
a session may set one up only after it has shown a one-time code:

- sent by email to the address on the account (local accounts: the one the administrator entered; directory
  accounts: the directory's mail attribute, refreshed at each sign-in), as a link and as a code to type, through the
  outbox like every other email; it works only in the browser session that asked for it; or
- issued on the server by an operator (``sde user enrolment-code``) for an account without an email address, and
  handed over by another route (in person, by phone); it works in one sign-in of that person.

Either works once, for ``enrolment_link_minutes``, only while the person's sessions are still the ones it was issued
for (a password change or reset, a reset of the second factor, a lockout raise the ``session_version`` and end it),
and only if no newer one was issued since. Only a SHA-256 of the code is stored; the email's copy is removed from
the outbox once it is delivered. Sending is limited per account (``enrolment_links_per_hour``). A directory sign-in
that finds a new address holds links back from it for ``EMAIL_HOLD`` (``email_changed``): a phished directory
password can often edit the person's own mail attribute.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway import audit
from gateway.config import SecuritySettings
from gateway.db import utcnow
from gateway.errors import Conflict
from gateway.models import EnrolmentCode, User, WebSession
from gateway.outbox import send_email

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: easy to read aloud and type
EMAIL = "email"
OPERATOR = "operator"

NO_EMAIL = ("Your account has no email address, so you cannot set up an authenticator app by yourself. Contact the "
            "service desk: they can give you a one-time set-up code by another route.")
EMAIL_CHANGED = ("Your email address changed recently, so the set-up link is not sent to it yet (someone who had only "
                 "your password could have changed it). Contact the service desk: they can give you a one-time set-up "
                 "code by another route.")
# How long after a directory sign-in finds a new address no set-up link is sent to it: a phished directory password
# can often edit the person's own mail attribute too; the owner is told at the old address and has time to act.
EMAIL_HOLD = dt.timedelta(days=7)
NOT_PROVEN = ("Before you set up an authenticator app, follow the link we sent to your email address (or enter its "
              "code) in this browser.")


def new_code() -> str:
    """Like ``7KQ4-M2XP-9TDA-WR3N``: 80 bits, readable aloud."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def normalise(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()


def hash_code(code: str) -> str:
    return hashlib.sha256(b"sde-enrolment:" + normalise(code).encode()).hexdigest()


def mask_email(address: str) -> str:
    """``a•••@example.org``: enough for the person to recognise, not enough to learn the address from the page."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def verified(ws: WebSession, security: SecuritySettings) -> bool:
    """Whether this session has proved the second channel recently enough to set up an authenticator."""
    at = ws.enrolment_verified_at
    return at is not None and at > utcnow() - dt.timedelta(minutes=security.enrolment_link_minutes)


def check_verified(ws: WebSession, security: SecuritySettings) -> None:
    if not verified(ws, security):
        raise Conflict(NOT_PROVEN)


@dataclass(frozen=True)
class Sent:
    """What happened to a request for a link: sent (to the masked address), or why not."""

    to: str | None = None
    refused: str | None = None  # "no_email" | "too_many"
    expires_at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None


def _supersede(session: Session, user: User, now: dt.datetime, only_email: bool) -> int:
    """The codes of ``user`` not yet used or superseded stop working: only the newest one counts. A new email link
    replaces older email links only (anyone with the password can have one sent, so it must not cancel the code the
    service desk handed over); a new code from the service desk replaces everything."""
    query = update(EnrolmentCode).where(EnrolmentCode.user_id == user.id, EnrolmentCode.used_at.is_(None),
                                        EnrolmentCode.superseded_at.is_(None))
    if only_email:
        query = query.where(EnrolmentCode.channel == EMAIL)
    result = session.execute(query.values(superseded_at=now), execution_options={"synchronize_session": "fetch"})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _sent_lately(session: Session, user: User, now: dt.datetime) -> int:
    return int(session.scalar(select(func.count()).select_from(EnrolmentCode).where(
        EnrolmentCode.user_id == user.id, EnrolmentCode.channel == EMAIL,
        EnrolmentCode.created_at > now - dt.timedelta(hours=1))) or 0)


def _email_body(user: User, code: str, link: str | None, minutes: int) -> str:
    follow = (f"To continue, open this link in the same browser:\n\n{link}\n\nor type this code on the page: {code}"
              if link else f"To continue, type this code on the page where you are signing in: {code}")
    return (f"Someone signed in to the London SDE gateway as {user.username} with your password and asked to set up "
            f"an authenticator app for the account.\n\n{follow}\n\nIt works once, for {minutes} minutes, and only in "
            "the browser where the sign-in began.\n\nIf this was not you, do not use it: someone knows your password. "
            "Change it (or, for an organisation account, ask your organisation to reset it) and tell the service "
            "desk.")


def email_changed(session: Session, user: User, new: str | None) -> None:
    """A directory sign-in found another address: take it (decisions are mailed there), tell the old one, and hold
    set-up links back from it for EMAIL_HOLD."""
    old, user.email = user.email, new
    if old:
        user.email_changed_at = utcnow()
        send_email(session, old, "Your email address for the London SDE gateway changed",
                   f"The email address of your London SDE account ({user.username}) is now "
                   f"{mask_email(new) if new else 'none'}, as your organisation's directory says. If you did not "
                   "change it, contact the service desk at once: someone may have your password.")
    audit.record(session, "ldap", "user.email_changed", "user", user.id,
                 {"from": mask_email(old) if old else None, "to": mask_email(new) if new else None})


def email_on_hold(user: User, now: dt.datetime | None = None) -> bool:
    return user.email_changed_at is not None and (now or utcnow()) - user.email_changed_at < EMAIL_HOLD


def send_link(session: Session, security: SecuritySettings, ws: WebSession, link_base: str | None) -> Sent:
    """Email a new one-time code (as a link to ``link_base``, and to type) bound to ``ws``; older ones stop working.

    The caller has locked and read the person's row. ``link_base`` is the page's address on the service's own
    configured host (None: the email carries only the code)."""
    user = ws.user
    now = utcnow()
    if not user.email:
        audit.record(session, user, "auth.enrolment_link_refused", "user", user.id,
                     {"reason": "no email address", "session": ws.id})
        return Sent(refused="no_email")
    if email_on_hold(user, now):
        audit.record(session, user, "auth.enrolment_link_refused", "user", user.id,
                     {"reason": "email address changed recently", "session": ws.id})
        return Sent(refused="email_changed")
    if _sent_lately(session, user, now) >= security.enrolment_links_per_hour:
        audit.record(session, user, "auth.enrolment_link_refused", "user", user.id,
                     {"reason": "too many links this hour", "session": ws.id})
        return Sent(to=mask_email(user.email), refused="too_many")
    superseded = _supersede(session, user, now, only_email=True)
    code = new_code()
    expires = min(now + dt.timedelta(minutes=security.enrolment_link_minutes), ws.expires_at)
    session.add(EnrolmentCode(user_id=user.id, web_session_id=ws.id, channel=EMAIL, code_hash=hash_code(code),
                              generation=user.session_version, created_at=now, expires_at=expires))
    link = f"{link_base}?code={normalise(code)}" if link_base else None
    send_email(session, user.email, "Setting up an authenticator app for the London SDE gateway",
               _email_body(user, code, link, security.enrolment_link_minutes), secret=True)
    session.flush()
    audit.record(session, user, "auth.enrolment_link_sent", "user", user.id,
                 {"session": ws.id, "to": mask_email(user.email), "expires_at": expires.isoformat(),
                  "superseded": superseded})
    return Sent(to=mask_email(user.email), expires_at=expires)


def issue_operator_code(session: Session, operator: str, user: User,
                        security: SecuritySettings) -> tuple[str, dt.datetime]:
    """A code an operator hands over by another route (``sde user enrolment-code``): for a person whose account has
    no email address, or whose mail does not arrive. Returns the code (shown once) and its expiry."""
    if not user.is_active:
        raise Conflict("This account is deactivated.")
    if user.totp_enabled:
        raise Conflict("This account already has an authenticator app: reset its second factor first "
                       "(an administrator, on the account's page).")
    session.refresh(user, attribute_names=["session_version"], with_for_update={"key_share": True})
    now = utcnow()
    superseded = _supersede(session, user, now, only_email=False)
    code = new_code()
    expires = now + dt.timedelta(minutes=security.enrolment_link_minutes)
    session.add(EnrolmentCode(user_id=user.id, web_session_id=None, channel=OPERATOR, code_hash=hash_code(code),
                              generation=user.session_version, created_at=now, expires_at=expires))
    session.flush()
    audit.record(session, operator, "user.enrolment_code_issued", "user", user.id,
                 {"expires_at": expires.isoformat(), "superseded": superseded})
    return code, expires


def usable_code(session: Session, ws: WebSession, code: str) -> tuple[EnrolmentCode | None, str]:
    """The person's code that ``code`` names, if this session may use it now; else None and the reason (for the
    audit log, never the page: the page says the same for every refusal)."""
    user = ws.user
    row = session.scalar(select(EnrolmentCode).where(EnrolmentCode.user_id == user.id,
                                                     EnrolmentCode.code_hash == hash_code(code))
                         .with_for_update())
    if row is None:
        return None, "no such code"
    if row.used_at is not None:
        return None, "already used"
    if row.superseded_at is not None:
        return None, "a newer code was issued"
    if row.expires_at <= utcnow():
        return None, "expired"
    if row.generation != user.session_version:
        return None, "issued before a password change, reset or lockout"
    if row.channel == EMAIL and row.web_session_id != ws.id:
        return None, "sent to another browser session"
    return row, ""
