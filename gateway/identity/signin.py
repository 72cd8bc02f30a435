"""The sign-in flow: password (local or LDAP), lockout, then the second factor.

Functions return an outcome rather than raising on a wrong password, because the failure itself
(the counter, the lock, the audit event) must be committed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.config import SecuritySettings
from gateway.db import utcnow
from gateway.identity import totp
from gateway.identity.accounts import find_user, record_login_time, sync_directory_roles, totp_required_for
from gateway.identity.ldap_directory import DirectoryUnavailable, LdapDirectory
from gateway.identity.passwords import DUMMY_HASH, hash_password, needs_rehash, verify_password
from gateway.models import RecoveryCode, User

GENERIC_FAILURE = "The username or password is not right."


class Next(StrEnum):
    DONE = "done"              # fully signed in
    SECOND_FACTOR = "totp"     # ask for the authenticator code
    ENROL = "enrol"            # the role requires a second factor the user has not set up
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    next: Next
    user: User | None = None
    message: str | None = None


def _is_locked(user: User, now: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def _locked_message(user: User) -> str:
    assert user.locked_until is not None
    return ("This account is locked after too many failed attempts. Try again after "
            f"{user.locked_until:%H:%M} UTC, or ask an administrator to unlock it.")


def register_failure(session: Session, user: User, security: SecuritySettings, stage: str) -> Outcome:
    user.failed_logins += 1
    audit.record(session, user, "auth.failed", "user", user.id,
                 {"stage": stage, "consecutive_failures": user.failed_logins})
    if user.failed_logins >= security.max_failed_logins:
        user.locked_until = utcnow() + dt.timedelta(minutes=security.lockout_minutes)
        user.session_version += 1
        audit.record(session, user, "auth.locked", "user", user.id,
                     {"until": user.locked_until.isoformat(), "after_failures": user.failed_logins})
        return Outcome(Next.FAILED, user, _locked_message(user))
    return Outcome(Next.FAILED, user, GENERIC_FAILURE if stage == "password" else
                   "That code is not right. Check your authenticator app and try again.")


def _after_password(session: Session, user: User) -> Outcome:
    user.failed_logins = 0
    user.locked_until = None
    if user.totp_enabled:
        return Outcome(Next.SECOND_FACTOR, user)
    if totp_required_for(session, user):
        return Outcome(Next.ENROL, user)
    return complete(session, user, method="password")


def complete(session: Session, user: User, method: str) -> Outcome:
    record_login_time(user)
    audit.record(session, user, "auth.signed_in", "user", user.id, {"method": method, "source": user.source})
    return Outcome(Next.DONE, user)


def sign_in_with_password(session: Session, security: SecuritySettings, directory: LdapDirectory | None,
                          username: str, password: str) -> Outcome:
    username = username.strip().lower()
    now = utcnow()
    user = find_user(session, username)
    if user is not None and _is_locked(user, now):
        audit.record(session, user, "auth.refused_locked", "user", user.id)
        return Outcome(Next.FAILED, user, _locked_message(user))
    if user is not None and not user.is_active:
        verify_password(DUMMY_HASH, password)
        audit.record(session, user, "auth.refused_inactive", "user", user.id)
        return Outcome(Next.FAILED, None, GENERIC_FAILURE)

    if user is not None and user.source == "local":
        assert user.password_hash is not None
        if not verify_password(user.password_hash, password):
            return register_failure(session, user, security, "password")
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        return _after_password(session, user)

    if directory is None:
        verify_password(DUMMY_HASH, password)
        return Outcome(Next.FAILED, None, GENERIC_FAILURE)
    try:
        found = directory.authenticate(username, password)
    except DirectoryUnavailable:
        return Outcome(Next.FAILED, user, "The organisation directory cannot be reached just now. "
                                          "Try again in a few minutes.")
    if found is None:
        if user is not None:
            return register_failure(session, user, security, "password")
        return Outcome(Next.FAILED, None, GENERIC_FAILURE)
    if user is None:
        user = User(username=found.username, display_name=found.display_name, email=found.email,
                    source="ldap", password_hash=None)
        session.add(user)
        session.flush()
        audit.record(session, "ldap", "user.created", "user", user.id,
                     {"username": user.username, "source": "ldap", "dn": found.dn})
    else:
        user.display_name = found.display_name
        user.email = found.email
    sync_directory_roles(session, user, directory.roles_for(found))
    return _after_password(session, user)


def verify_second_factor(session: Session, security: SecuritySettings, user: User, code: str) -> Outcome:
    """Accept a fresh authenticator code, or an unused recovery code (which is then spent)."""
    if _is_locked(user, utcnow()):
        return Outcome(Next.FAILED, user, _locked_message(user))
    assert user.totp_secret is not None
    step = totp.matching_step(user.totp_secret, code)
    if step is not None:
        if user.totp_last_step is not None and step <= user.totp_last_step:
            audit.record(session, user, "auth.totp_replay_refused", "user", user.id)
            return register_failure(session, user, security, "second_factor")
        user.totp_last_step = step
        user.failed_logins = 0
        return complete(session, user, method="password+totp")
    recovery = session.scalar(select(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.code_hash == totp.hash_recovery_code(code),
        RecoveryCode.used_at.is_(None)))
    if recovery is not None:
        recovery.used_at = utcnow()
        user.failed_logins = 0
        audit.record(session, user, "auth.recovery_code_used", "user", user.id)
        return complete(session, user, method="password+recovery_code")
    return register_failure(session, user, security, "second_factor")


def start_enrolment(user: User) -> str:
    """A new secret, held in the caller's session until the user proves their app has it."""
    del user
    return totp.new_secret()


def confirm_enrolment(session: Session, security: SecuritySettings, user: User, secret: str,
                      code: str) -> list[str] | None:
    """Store the secret once a code from it is shown; returns fresh recovery codes (shown once)."""
    step = totp.matching_step(secret, code)
    if step is None:
        return None
    user.totp_secret = secret
    user.totp_confirmed_at = utcnow()
    user.totp_last_step = step
    for old in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)):
        session.delete(old)
    codes = totp.new_recovery_codes(security.recovery_codes)
    for plain in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=totp.hash_recovery_code(plain)))
    user.session_version += 1
    audit.record(session, user, "auth.totp_enrolled", "user", user.id, {"recovery_codes": len(codes)})
    return codes
