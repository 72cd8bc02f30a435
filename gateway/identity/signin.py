"""The sign-in flow: password (local or LDAP), then the code, or (with no authenticator yet) the one-time link from
email and then enrolment, then a forced new password when due.

Each step is one function that takes the server-side session (gateway/identity/sessions.py) it acts on and
refuses a session in any other state. One failure count covers wrong passwords and wrong codes (and a wrong
current password when changing it): only a complete sign-in resets it, so re-entering the right password buys
no further code guesses. Functions return an outcome rather than raising on a wrong secret, because the
failure itself (the counter, the lock, the audit event) must be committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import SYSTEM
from gateway.config import SecuritySettings
from gateway.db import utcnow
from gateway.errors import Conflict, ValidationError
from gateway.identity import enrolment, totp
from gateway.identity.accounts import (
    RESERVED_USERNAMES,
    bind_directory_entry,
    directory_entry_problem,
    find_user,
    record_login_time,
    sync_directory_roles,
    totp_required_for,
)
from gateway.identity.ldap_directory import DirectoryUnavailable, LdapDirectory
from gateway.identity.passwords import DUMMY_HASH, hash_password, needs_rehash, password_problems, verify_password
from gateway.identity.sessions import S, SignInState, check_state, end_session, end_sessions, move, open_session
from gateway.models import RecoveryCode, User, WebSession

GENERIC_FAILURE = "The username or password is not right."
WRONG_CODE = "That code is not right. Check your authenticator app and try again."


@dataclass(frozen=True)
class Outcome:
    """Where a step led: ``state`` is the next step (None when refused); ``key`` the new cookie key."""

    state: SignInState | None
    user: User | None = None
    message: str | None = None
    key: str | None = None
    session: WebSession | None = None

    @property
    def ok(self) -> bool:
        return self.state is not None

    @property
    def locked(self) -> bool:
        return self.user is not None and _is_locked(self.user, utcnow())


def _is_locked(user: User, now: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def is_locked(user: User) -> bool:
    return _is_locked(user, utcnow())


def _locked_message(user: User) -> str:
    assert user.locked_until is not None
    return ("This account is locked after too many failed attempts. Try again after "
            f"{user.locked_until:%H:%M} UTC, or ask an administrator to unlock it.")


def register_failure(session: Session, user: User, security: SecuritySettings, stage: str) -> Outcome:
    """Count one wrong secret; at the limit, lock the account and end all its sessions (half-done ones too).

    The user's row is locked and re-read first, so guesses sent in parallel each count (no lost update). FOR NO KEY
    UPDATE, as everywhere the row is locked: a sign-in adding its session row (key share) goes on, where it could
    otherwise hold the very session the lockout waits to end, and deadlock."""
    _lock_and_read(session, user)
    user.failed_logins += 1
    audit.record(session, user, "auth.failed", "user", user.id,
                 {"stage": stage, "consecutive_failures": user.failed_logins})
    if user.failed_logins >= security.max_failed_logins:
        user.locked_until = utcnow() + dt.timedelta(minutes=security.lockout_minutes)
        end_sessions(session, user, "locked")
        audit.record(session, user, "auth.locked", "user", user.id,
                     {"until": user.locked_until.isoformat(), "after_failures": user.failed_logins})
        return Outcome(None, user, _locked_message(user))
    return Outcome(None, user, GENERIC_FAILURE if stage == "password" else WRONG_CODE)


def _lock_and_read(session: Session, user: User, *extra: str) -> None:
    """Lock the person's row (FOR NO KEY UPDATE, as everywhere) and read again what a step decides on.

    A request read the row when it began; guesses sent in parallel lock the account meanwhile, or spend the code
    this one holds. Read under the lock, the lock (and the last code step) is the one every other request sees:
    no more secrets are tried than the limit allows, and a code is used once."""
    session.refresh(user, attribute_names=["failed_logins", "locked_until", "session_version", "is_active", *extra],
                    with_for_update={"key_share": True})


def _after_authentication(user: User) -> SignInState:
    """Once both factors are proven: a password someone else chose must be replaced first."""
    return S.NEW_PASSWORD if user.must_change_password and user.source == "local" else S.SIGNED_IN


def _complete(session: Session, user: User, ws: WebSession, method: str) -> None:
    user.failed_logins = 0
    user.locked_until = None
    record_login_time(user)
    audit.record(session, user, "auth.signed_in", "user", user.id,
                 {"method": method, "source": user.source, "session": ws.id})


def _advance(session: Session, security: SecuritySettings, ws: WebSession, target: SignInState,
             method: str) -> Outcome:
    key = move(session, ws, target, security, method)
    if target is S.SIGNED_IN:
        _complete(session, ws.user, ws, method)
    return Outcome(target, ws.user, key=key, session=ws)


def _after_password(session: Session, security: SecuritySettings, user: User, totp_by_default: bool,
                    replaces: WebSession | None, enrolment_link: str | None) -> Outcome:
    _lock_and_read(session, user)  # the right password, but parallel wrong ones may have locked the account since
    if _is_locked(user, utcnow()):
        audit.record(session, user, "auth.refused_locked", "user", user.id)
        return Outcome(None, user, _locked_message(user))
    if not user.is_active:
        audit.record(session, user, "auth.refused_inactive", "user", user.id)
        return Outcome(None, None, GENERIC_FAILURE)
    if replaces is not None:
        end_session(session, replaces, "replaced by a new sign-in")
    if user.totp_enabled:
        state = S.CODE
    elif totp_required_for(session, user, totp_by_default):
        state = S.VERIFY  # the password alone never sets up a factor: first the link sent to the account's email
    else:
        state = _after_authentication(user)
    ws, key = open_session(session, user, state, security, method="password")
    if state is S.SIGNED_IN:
        _complete(session, user, ws, "password")
    else:
        audit.record(session, user, "auth.password_accepted", "user", user.id,
                     {"next": state.value, "session": ws.id, "source": user.source})
        if state is S.VERIFY:
            enrolment.send_link(session, security, ws, enrolment_link)
    return Outcome(state, user, key=key, session=ws)


def sign_in_with_password(session: Session, security: SecuritySettings, directory: LdapDirectory | None,
                          username: str, password: str, *, totp_by_default: bool = False,
                          replaces: WebSession | None = None, enrolment_link: str | None = None) -> Outcome:
    """The first step. ``replaces`` is a half-done sign-in in the same browser, ended when this one opens;
    ``enrolment_link`` the address of the page an emailed set-up link opens (None: the email gives only the code)."""
    username = username.strip().lower()
    now = utcnow()
    user = find_user(session, username)
    if user is not None and _is_locked(user, now):
        audit.record(session, user, "auth.refused_locked", "user", user.id)
        return Outcome(None, user, _locked_message(user))
    if user is not None and not user.is_active:
        verify_password(DUMMY_HASH, password)
        audit.record(session, user, "auth.refused_inactive", "user", user.id)
        return Outcome(None, None, GENERIC_FAILURE)

    if user is not None and user.source == "local":
        assert user.password_hash is not None
        if not verify_password(user.password_hash, password):
            return register_failure(session, user, security, "password")
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        return _after_password(session, security, user, totp_by_default, replaces, enrolment_link)

    if directory is None:
        verify_password(DUMMY_HASH, password)
        return Outcome(None, None, GENERIC_FAILURE)
    try:
        found = directory.authenticate(username, password)
    except DirectoryUnavailable:
        return Outcome(None, user, "The organisation directory cannot be reached just now. "
                                   "Try again in a few minutes.")
    if found is None:
        if user is not None:
            return register_failure(session, user, security, "password")
        return Outcome(None, None, GENERIC_FAILURE)
    if (refused := directory_entry_problem(session, user, found)) is not None:
        # the right password, but of another entry than the account's: never the account, and not counted against it
        audit.record(session, SYSTEM, refused, "user", user.id if user else None,
                     {"username": found.username, "dn": found.dn, "entry_id": found.entry_id})
        return Outcome(None, None, GENERIC_FAILURE)
    if user is None:
        if found.username in RESERVED_USERNAMES or ":" in found.username:  # the log's own names, or a CLI label's
            audit.record(session, SYSTEM, "auth.refused_reserved_name", "user", None, {"dn": found.dn})
            return Outcome(None, None, GENERIC_FAILURE)
        user = User(username=found.username, display_name=found.display_name, email=found.email,
                    source="ldap", password_hash=None, directory_entry_id=found.entry_id)
        session.add(user)
        session.flush()
        audit.record(session, "ldap", "user.created", "user", user.id,
                     {"username": user.username, "source": "ldap", "dn": found.dn, "entry_id": found.entry_id})
    else:
        bind_directory_entry(session, user, found)
        user.display_name = found.display_name
        if found.email != user.email:
            enrolment.email_changed(session, user, found.email)
    sync_directory_roles(session, user, directory.roles_for(found))
    return _after_password(session, security, user, totp_by_default, replaces, enrolment_link)


def verify_second_factor(session: Session, security: SecuritySettings, ws: WebSession, code: str) -> Outcome:
    """The code step: a fresh authenticator code, or an unused recovery code (which is then spent)."""
    check_state(ws, S.CODE)
    user = ws.user
    _lock_and_read(session, user, "totp_last_step")
    session.refresh(ws, attribute_names=["state", "generation"])
    if _is_locked(user, utcnow()):
        return Outcome(None, user, _locked_message(user))
    if ws.state != S.CODE or ws.generation != user.session_version or not user.is_active:
        return Outcome(None, user, "This sign-in has ended meanwhile. Sign in again.")
    assert user.totp_secret is not None
    step = totp.matching_step(user.totp_secret, code)
    if step is not None:
        if user.totp_last_step is not None and step <= user.totp_last_step:
            audit.record(session, user, "auth.totp_replay_refused", "user", user.id)
            return register_failure(session, user, security, "second_factor")
        user.totp_last_step = step
        return _advance(session, security, ws, _after_authentication(user), "password+totp")
    recovery = session.scalar(select(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.code_hash == totp.hash_recovery_code(code),
        RecoveryCode.used_at.is_(None)))
    if recovery is not None:
        recovery.used_at = utcnow()
        audit.record(session, user, "auth.recovery_code_used", "user", user.id)
        return _advance(session, security, ws, _after_authentication(user), "password+recovery_code")
    return register_failure(session, user, security, "second_factor")


ENROLMENT_CODE_REFUSED = ("That link or code does not work here. It may have been used already, have expired, have "
                          "been replaced by a newer one, or have been sent to another browser: open the newest email "
                          "in the browser where you are signing in, or send a new link.")


def _may_enrol(ws: WebSession) -> None:
    """Setting up an authenticator happens at the sign-in's enrolment step, or signed in, for someone without one."""
    if ws.state == S.SIGNED_IN:
        if ws.user.totp_enabled:
            raise Conflict("An authenticator app is already set up for this account. Ask an administrator to "
                           "reset it if you lost it.")
        return
    check_state(ws, S.VERIFY if ws.state == S.VERIFY else S.ENROL)


def request_enrolment_link(session: Session, security: SecuritySettings, ws: WebSession,
                           link_base: str | None) -> enrolment.Sent:
    """Email a new one-time set-up link bound to this session (the sign-in's link step, or the account page)."""
    if ws.state != S.SIGNED_IN:
        check_state(ws, S.VERIFY)
    _may_enrol(ws)
    _read_again_locked(session, ws)
    return enrolment.send_link(session, security, ws, link_base)


def verify_enrolment_code(session: Session, security: SecuritySettings, ws: WebSession, code: str) -> Outcome:
    """The emailed link (or the service desk's code) shown in this session: it may now set up an authenticator.

    At the sign-in's link step the sign-in moves on to enrolment (a new cookie key); signed in, the session is
    marked. A code that does not work here (wrong, used, expired, superseded, from before a password change, or sent
    to another session) counts as a failed attempt towards the lockout, like a wrong authenticator code."""
    if ws.state != S.SIGNED_IN:
        check_state(ws, S.VERIFY)
    _may_enrol(ws)
    user = ws.user
    _lock_and_read(session, user, "totp_confirmed_at")
    session.refresh(ws, attribute_names=["state", "generation"])
    if _is_locked(user, utcnow()):
        return Outcome(None, user, _locked_message(user))
    if ws.state == S.ENDED or ws.generation != user.session_version or not user.is_active:
        return Outcome(None, user, "This sign-in has ended meanwhile. Sign in again.")
    row, reason = enrolment.usable_code(session, ws, code)
    if row is None:
        audit.record(session, user, "auth.enrolment_code_refused", "user", user.id,
                     {"reason": reason, "session": ws.id})
        outcome = register_failure(session, user, security, "enrolment_code")
        return outcome if outcome.locked else Outcome(None, user, ENROLMENT_CODE_REFUSED)
    now = utcnow()
    row.used_at = now
    audit.record(session, user, "auth.enrolment_code_used", "user", user.id,
                 {"channel": row.channel, "session": ws.id, "code": row.id})
    if ws.state == S.SIGNED_IN:
        ws.enrolment_verified_at = now
        session.flush()
        return Outcome(S.SIGNED_IN, user, session=ws)
    via = "email" if row.channel == enrolment.EMAIL else "operator_code"
    key = move(session, ws, S.ENROL, security, f"{ws.method or 'password'}+{via}")
    ws.enrolment_verified_at = now
    session.flush()
    return Outcome(S.ENROL, user, key=key, session=ws)


def enrolment_secret(session: Session, security: SecuritySettings, ws: WebSession) -> str:
    """The secret being set up in this session (kept on the server until a code from it is shown); only once the
    session has proved the second channel (gateway/identity/enrolment.py)."""
    _may_enrol(ws)
    enrolment.check_verified(ws, security)
    if not ws.pending_totp_secret:
        ws.pending_totp_secret = totp.new_secret()
        session.flush()
    return ws.pending_totp_secret


def confirm_enrolment(session: Session, security: SecuritySettings, ws: WebSession, code: str) -> list[str] | None:
    """Store this session's pending secret once a code from it is shown; returns fresh recovery codes (shown
    once), or None for a wrong code. Refused when an authenticator is already set up: replacing one takes an
    administrator's reset, never a second enrolment page left open in another tab."""
    user = ws.user
    if user.totp_enabled:
        raise Conflict("An authenticator app is already set up for this account. Ask an administrator to reset "
                       "it if you lost it.")
    _may_enrol(ws)
    enrolment.check_verified(ws, security)
    secret = ws.pending_totp_secret
    if not secret:
        return None
    step = totp.matching_step(secret, code)
    if step is None:
        return None
    user.totp_secret = secret
    user.totp_confirmed_at = utcnow()
    user.totp_last_step = step
    ws.pending_totp_secret = None
    ws.enrolment_verified_at = None  # one proof, one authenticator
    for old in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        session.delete(old)
    codes = totp.new_recovery_codes(security.recovery_codes)
    for plain in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=totp.hash_recovery_code(plain)))
    end_sessions(session, user, "second factor set up", keep=ws)
    audit.record(session, user, "auth.totp_enrolled", "user", user.id, {"recovery_codes": len(codes)})
    return codes


def finish_enrolment(session: Session, security: SecuritySettings, ws: WebSession,
                     code: str) -> tuple[Outcome, list[str] | None]:
    """The enrolment step of a sign-in: confirming the app is the second factor, so the sign-in moves on."""
    check_state(ws, S.ENROL)
    codes = confirm_enrolment(session, security, ws, code)
    if codes is None:
        return Outcome(None, ws.user, "That code is not right. Check the time on your phone and enter the newest "
                                      "code."), None
    return _advance(session, security, ws, _after_authentication(ws.user),
                    f"{ws.method or 'password'}+totp_enrolment"), codes


def _new_password_problems(user: User, password: str, again: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if password != again:
        errors["password_again"] = ["The two new passwords do not match."]
    problems = password_problems(password, user.username, (user.display_name, (user.email or "").split("@")[0]))
    assert user.password_hash is not None
    if password and verify_password(user.password_hash, password):
        problems.insert(0, "Choose a password different from the one you have now.")
    if problems:
        errors["password"] = problems
    return errors


def _read_again_locked(session: Session, ws: WebSession) -> User:
    """The person's row locked and read again, with this session: a reset on the server (``sde user set-password``),
    a lock or another change committed since the request began wins, instead of being overwritten by what was read
    before it (a password change would otherwise silently undo a temporary password just set). FOR NO KEY UPDATE,
    as ``register_failure`` and the reset: a sign-in adding its session row is not blocked (a deadlock otherwise)."""
    user = ws.user
    _lock_and_read(session, user, "password_hash", "must_change_password")
    session.refresh(ws, attribute_names=["state", "generation"])
    if ws.state == S.ENDED or ws.generation != user.session_version or not user.is_active:
        raise Conflict("This session has ended meanwhile (your password was reset, or your account locked). "
                       "Sign in again.")
    return user


def _set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    user.must_change_password = False
    user.password_changed_at = utcnow()


def set_first_password(session: Session, security: SecuritySettings, ws: WebSession, password: str,
                       again: str) -> Outcome:
    """The new-password step: the person replaces the password someone else chose, then is signed in."""
    check_state(ws, S.NEW_PASSWORD)
    user = _read_again_locked(session, ws)
    errors = _new_password_problems(user, password, again)
    if errors:
        raise ValidationError("Choose another password.", field_errors=errors)
    _set_password(user, password)
    end_sessions(session, user, "password changed", keep=ws)
    audit.record(session, user, "auth.password_changed", "user", user.id, {"forced": True, "session": ws.id})
    method = ws.method or "password"
    return _advance(session, security, ws, S.SIGNED_IN, method)


def change_password(session: Session, security: SecuritySettings, ws: WebSession, current: str, password: str,
                    again: str) -> dict[str, list[str]]:
    """The account page's change; returns the problems by field (empty when changed).

    The current password comes first, and a wrong one counts towards the lockout (returned, not raised, so the
    count is committed). Every other session of the person ends; this one goes on.
    """
    check_state(ws, S.SIGNED_IN)
    if ws.user.source != "local" or ws.user.password_hash is None:
        raise Conflict("Your password belongs to your organisation's directory: change it there.")
    user = _read_again_locked(session, ws)
    if user.password_hash is None or not verify_password(user.password_hash, current):
        outcome = register_failure(session, user, security, "password_change")
        return {"current_password": [outcome.message if outcome.locked else "Your current password is not right."]}
    errors = _new_password_problems(user, password, again)
    if errors:
        return errors
    _set_password(user, password)
    ended = end_sessions(session, user, "password changed", keep=ws)
    audit.record(session, user, "auth.password_changed", "user", user.id,
                 {"forced": False, "session": ws.id, "other_sessions_ended": ended})
    return {}


def sign_out(session: Session, ws: WebSession) -> None:
    was = ws.state
    end_session(session, ws, "signed out")
    audit.record(session, ws.user, "auth.signed_out", "user", ws.user_id, {"session": ws.id, "from": was})
