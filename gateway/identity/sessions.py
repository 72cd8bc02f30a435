"""Browser sessions kept on the server, and the sign-in state machine they move through.

A sign-in is one row of ``web_sessions``: opened by the right password in the step that comes next, moved
only along ``SIGN_IN_TRANSITIONS``, and ended by signing out (or by anything that raises the user's
``session_version``). The cookie holds a random key that is replaced at every move, so a copy of an earlier
cookie opens nothing. Each step's page serves only its own state: the access hook (gateway/app.py) sends any
other state to its own page, and every step's service refuses a session in another state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from enum import StrEnum

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, joinedload

from gateway.config import SecuritySettings
from gateway.db import utcnow
from gateway.errors import InvalidTransition
from gateway.models import EnrolmentCode, User, WebSession
from projects.workflow import check_move


class SignInState(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a state name: the sign-in page, before any session exists
    CODE = "code"                  # waiting for the authenticator code (or a recovery code)
    VERIFY = "verify"              # the role needs a second factor not set up: first the one-time link from email
    ENROL = "enrol"                # the link was followed in this browser: the person sets up an authenticator
    NEW_PASSWORD = "new_password"  # noqa: S105 - a state name: the person must choose their own password
    SIGNED_IN = "signed_in"
    ENDED = "ended"


S = SignInState

# (from, to) -> what makes the move. Anything not here is refused and changes nothing.
SIGN_IN_TRANSITIONS: dict[tuple[SignInState, SignInState], str] = {
    (S.PASSWORD, S.CODE): "right password, authenticator set up",
    (S.PASSWORD, S.VERIFY): "right password, second factor required but not set up: a one-time link is emailed",
    (S.PASSWORD, S.NEW_PASSWORD): "right password, no second factor needed, password chosen by someone else",
    (S.PASSWORD, S.SIGNED_IN): "right password, nothing more needed",
    (S.CODE, S.NEW_PASSWORD): "right code, password chosen by someone else",
    (S.CODE, S.SIGNED_IN): "right code or unused recovery code",
    (S.VERIFY, S.ENROL): "the emailed link followed in this browser (or the service desk's code)",
    (S.ENROL, S.NEW_PASSWORD): "authenticator confirmed, password chosen by someone else",
    (S.ENROL, S.SIGNED_IN): "authenticator confirmed",
    (S.NEW_PASSWORD, S.SIGNED_IN): "own password chosen",
    (S.CODE, S.ENDED): "sign out, lockout, new sign-in, timeout",
    (S.VERIFY, S.ENDED): "sign out, lockout, new sign-in, timeout",
    (S.ENROL, S.ENDED): "sign out, lockout, new sign-in, timeout",
    (S.NEW_PASSWORD, S.ENDED): "sign out, new sign-in, timeout",
    (S.SIGNED_IN, S.ENDED): "sign out (here or everywhere), password change, lockout, account change, timeout",
}

SIGN_IN_OWNERS: dict[SignInState, str] = {
    S.PASSWORD: "anyone with a username and password",
    S.CODE: "the person signing in, with a code from their authenticator app or a recovery code",
    S.VERIFY: "the person signing in, following the one-time link sent to their email (or typing its code)",
    S.ENROL: "the person signing in, setting up an authenticator app",
    S.NEW_PASSWORD: "the person signing in, choosing their own password",
    S.SIGNED_IN: "the person (sign out); an administrator or the gateway (deactivation, lockout, role change)",
    S.ENDED: "final",
}

STEP_STATES = frozenset({S.CODE, S.VERIFY, S.ENROL, S.NEW_PASSWORD})

# How a session's person proved who they are, as the account page says it.
METHOD_LABELS: dict[str, str] = {
    "password": "Password",
    "password+totp": "Password and authenticator code",
    "password+recovery_code": "Password and a recovery code",
    "password+totp_enrolment": "Password, then set up an authenticator app",
    "password+email+totp_enrolment": "Password and a link sent by email, then set up an authenticator app",
    "password+operator_code+totp_enrolment": "Password and a code from the service desk, then set up an "
                                             "authenticator app",
}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _expiry(state: SignInState, security: SecuritySettings, now: dt.datetime) -> dt.datetime:
    if state is S.SIGNED_IN:
        return now + dt.timedelta(hours=security.session_hours)
    if state is S.VERIFY:  # the person goes to their mailbox and back: as long as the link works
        return now + dt.timedelta(minutes=security.enrolment_link_minutes)
    return now + dt.timedelta(minutes=security.sign_in_step_minutes)


def check_state(ws: WebSession, expected: SignInState) -> None:
    """Refuse a step asked of a session in another state (the view's guard, repeated where the rule lives)."""
    if ws.state != expected:
        raise InvalidTransition(f"This sign-in is waiting for the {S(ws.state).value.replace('_', ' ')} step, "
                                f"not the {expected.value.replace('_', ' ')} step.")


def open_session(session: Session, user: User, state: SignInState, security: SecuritySettings,
                 method: str | None = None) -> tuple[WebSession, str]:
    """Start a sign-in after the right password, in ``state``; returns the row and the cookie's key."""
    check_move(SIGN_IN_TRANSITIONS, S.PASSWORD, state, "A sign-in")
    now, key = utcnow(), secrets.token_urlsafe(32)
    ws = WebSession(user_id=user.id, key_hash=_digest(key), state=state.value, generation=user.session_version,
                    method=method, created_at=now, expires_at=_expiry(state, security, now),
                    signed_in_at=now if state is S.SIGNED_IN else None)
    ws.user = user
    session.add(ws)
    session.flush()
    return ws, key


def move(session: Session, ws: WebSession, target: SignInState, security: SecuritySettings,
         method: str | None = None) -> str:
    """Move a sign-in one step along the table; returns the new key (the old one stops working)."""
    check_move(SIGN_IN_TRANSITIONS, ws.state, target, "A sign-in")
    now, key = utcnow(), secrets.token_urlsafe(32)
    ws.state, ws.key_hash = target.value, _digest(key)
    ws.expires_at = _expiry(target, security, now)
    ws.pending_totp_secret = None
    ws.enrolment_verified_at = None  # proof of the second channel is for the step it was given in
    if method:
        ws.method = method
    if target is S.SIGNED_IN:
        ws.signed_in_at = now
    session.flush()
    return key


def end_session(session: Session, ws: WebSession, reason: str) -> None:
    if ws.state == S.ENDED:
        return
    check_move(SIGN_IN_TRANSITIONS, ws.state, S.ENDED, "A sign-in")
    ws.state, ws.ended_at, ws.end_reason, ws.pending_totp_secret = S.ENDED.value, utcnow(), reason, None
    ws.enrolment_verified_at = None
    session.flush()


def bump_session_version(user: User) -> None:
    """End every session of ``user`` by raising their version, as one increment in the database (``SET
    session_version = session_version + 1``), never a number worked out from what this request read: a password
    change committed meanwhile gives its own session the next number, which a written number would repeat, and so
    keep alive."""
    user.session_version = User.session_version + 1  # type: ignore[assignment]


def end_sessions(session: Session, user: User, reason: str, keep: WebSession | None = None) -> int:
    """End every open session of ``user`` (but ``keep``); returns how many. Raising the version also ends
    any session this misses, because a session lives only while its generation matches. The version is raised in
    the database (``bump_session_version``) and read back: signing out everywhere, or setting up an authenticator,
    could otherwise write the number a change meanwhile gave its own session."""
    bump_session_version(user)
    session.flush()
    if keep is not None:
        keep.generation = user.session_version  # the raised number, read back under the update's row lock
    query = (update(WebSession).where(WebSession.user_id == user.id, WebSession.state != S.ENDED.value)
             .values(state=S.ENDED.value, ended_at=utcnow(), end_reason=reason, pending_totp_secret=None,
                     enrolment_verified_at=None))
    if keep is not None:
        query = query.where(WebSession.id != keep.id)
    result = session.execute(query, execution_options={"synchronize_session": "fetch"})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# The statement every request sends, built once per process: SQLAlchemy keeps its cache key on the object and its
# compiled form in the engine's cache, so a request only binds the key's digest. The session, its person and the
# person's roles in one statement.
_LIVE_SESSION = (select(WebSession).options(joinedload(WebSession.user).joinedload(User.role_grants))
                 .where(WebSession.key_hash == bindparam("key_hash")))


def live_session(session: Session, key: str | None) -> WebSession | None:
    """The open, unexpired session this cookie key belongs to, with its active user; else None."""
    if not key or not isinstance(key, str) or len(key) > 100:
        return None
    ws = session.scalar(_LIVE_SESSION, {"key_hash": _digest(key)})
    if ws is None or ws.state == S.ENDED or ws.expires_at <= utcnow():
        return None
    if not ws.user.is_active or ws.generation != ws.user.session_version:
        return None
    return ws


def open_sessions(session: Session, user: User) -> list[WebSession]:
    """The person's signed-in sessions that are still open (for the account page)."""
    rows = session.scalars(select(WebSession).where(
        WebSession.user_id == user.id, WebSession.state == S.SIGNED_IN.value,
        WebSession.generation == user.session_version, WebSession.expires_at > utcnow())
        .order_by(WebSession.signed_in_at.desc()))
    return list(rows)


def purge_old_sessions(session: Session, older_than_days: int = 30) -> int:
    """Forget sessions that ended or expired long ago (the audit log keeps the sign-ins and sign-outs)."""
    from sqlalchemy import delete, or_

    cutoff = utcnow() - dt.timedelta(days=older_than_days)
    # a code is made while its session is open, so one made before the cutoff is all that can name a session going
    session.execute(delete(EnrolmentCode).where(EnrolmentCode.created_at < cutoff))
    result = session.execute(delete(WebSession).where(or_(WebSession.ended_at < cutoff,
                                                          WebSession.expires_at < cutoff)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
