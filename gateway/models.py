"""Identity and audit tables. Project, charging and output tables live with their own packages."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.db import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "(source = 'local' AND password_hash IS NOT NULL) OR (source = 'ldap' AND password_hash IS NULL)",
            name="password_matches_source",
        ),
        CheckConstraint(
            "(totp_secret IS NULL AND totp_confirmed_at IS NULL) OR totp_secret IS NOT NULL",
            name="totp_confirmed_needs_secret",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    # When a directory sign-in found a new address (enrolment.EMAIL_HOLD: no set-up link goes to it for a while)
    email_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="local")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set when someone else chose the password (an administrator, the command line): the person must pick
    # their own before anything else. Never set for directory (LDAP) accounts.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Directory (LDAP) accounts: the directory's own id of the entry the account was made from (entryUUID by default,
    # ``ldap.entry_id_attribute``). A later entry holding the same username (somebody else, given a name that was
    # freed) is refused: usernames are recycled, entries are not. None for local accounts.
    directory_entry_id: Mapped[str | None] = mapped_column(String(255))

    role_grants: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin",
        foreign_keys="UserRole.user_id",
    )

    # Not stored: set for one request made with an API token, whose scopes narrow what the roles grant
    # (gateway.permissions.permissions_of intersects the two). None means a browser session: roles only.
    token_scopes: ClassVar[frozenset[str] | None] = None
    token_read_only: ClassVar[bool] = False
    # When the request's token expires (None for a browser session): a token it makes may not outlive it.
    token_expires_at: ClassVar[dt.datetime | None] = None
    token_id: ClassVar[int | None] = None  # the token this request came with (set per request, like the above)

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(grant.role for grant in self.role_grants)

    @property
    def totp_enabled(self) -> bool:
        return self.totp_confirmed_at is not None

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    user: Mapped[User] = relationship(back_populates="role_grants", foreign_keys=[user_id])


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("(revoked_at IS NULL) = (revoked_by_id IS NULL)", name="revoked_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # every token expires (1 to 366 days)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The token that made this one through the API (None: made from the account page or the CLI): revoking it
    # revokes this one too, so a leaked token's children do not outlive its revocation
    parent_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    # The permissions (by name) this token may exercise, a subset of its owner's at creation; the owner's
    # current roles still apply at each use. A read-only token may only read (GET), whatever its scopes.
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class RolePolicy(Base):
    """A role whose second-factor rule differs from the default (on in production), set by an administrator.

    A role without a row follows the default; relaxing a role carries the administrator's reason.
    """

    __tablename__ = "role_policies"
    __table_args__ = (
        CheckConstraint("(changed_by_id IS NULL) = (changed_at IS NULL)", name="changed_pair"),
    )

    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(500))
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    changed_by: Mapped[User | None] = relationship(foreign_keys=[changed_by_id])


class WebSession(Base):
    """One browser's sign-in, from the right password until it ends, kept on the server.

    The cookie carries only a random key (stored here as its SHA-256), replaced at every step, so a copy of an
    old cookie is worth nothing; signing out ends the row, and a session lives only while its ``generation``
    equals the user's ``session_version`` (which sign-out-everywhere, lockout, role and password changes raise).
    """

    __tablename__ = "web_sessions"
    __table_args__ = (
        CheckConstraint("(state = 'ended') = (ended_at IS NOT NULL)", name="ended_pair"),
        CheckConstraint("(state <> 'signed_in' OR signed_in_at IS NOT NULL) "
                        "AND (state IN ('signed_in', 'ended') OR signed_in_at IS NULL)", name="signed_in_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    method: Mapped[str | None] = mapped_column(String(40))  # how the person proved who they are
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_in_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(40))
    # An authenticator secret being set up, until a code from it is shown (never in the cookie).
    pending_totp_secret: Mapped[str | None] = mapped_column(String(64))
    # When this session proved the second channel (the emailed one-time link, or a code from the service desk):
    # only then may it set up an authenticator (gateway/identity/enrolment.py).
    enrolment_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class EnrolmentCode(Base):
    """A one-time code that lets one sign-in set up an authenticator: proof of a second channel, so a password
    alone (phished, a temporary one intercepted, or after an administrator's reset) cannot bind a new factor.

    Only its SHA-256 is kept. An ``email`` code is sent to the account's address and works only in the browser
    session that asked for it (``web_session_id``); an ``operator`` code is issued on the server (``sde user
    enrolment-code``) for an account without an address and is handed over by another route. Either works once,
    until ``expires_at``, while the person's ``session_version`` is still ``generation`` (a password change or reset,
    a reset of the second factor, a lockout end it), and only if no newer code was issued (``superseded_at``).
    """

    __tablename__ = "enrolment_codes"
    __table_args__ = (
        CheckConstraint("channel IN ('email', 'operator')", name="channel_known"),
        CheckConstraint("(channel = 'email') = (web_session_id IS NOT NULL)", name="email_bound_to_session"),
        CheckConstraint("NOT (used_at IS NOT NULL AND superseded_at IS NOT NULL)", name="used_or_superseded"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    web_session_id: Mapped[int | None] = mapped_column(ForeignKey("web_sessions.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    generation: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    superseded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """One append-only event; ``hash`` covers its fields and the previous event's hash."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    actor_label: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100), index=True)
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """A single row naming the last event; appending locks it so the chain never forks."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))

