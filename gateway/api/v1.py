"""Version 1 of the JSON API. Each operation calls the same service as its page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import jsonify
from pydantic import BaseModel, ConfigDict, Field

from gateway import audit
from gateway.errors import ValidationError
from gateway.identity import accounts, tokens
from gateway.models import ApiToken, AuditEvent, User
from gateway.permissions import Permission, permissions_of
from gateway.web.access import public
from gateway.web.context import db, require_user, run, settings
from gateway.web.recorded import records_download
from projects import dates

from .base import VERSION, api, bp
from .registry import QueryDate


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    source: str
    is_active: bool
    roles: list[str]
    totp_enabled: bool
    locked_until: dt.datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, username=user.username, display_name=user.display_name, email=user.email,
                   source=user.source, is_active=user.is_active, roles=sorted(user.roles),
                   totp_enabled=user.totp_enabled, locked_until=user.locked_until)


class MeOut(UserOut):
    permissions: list[str]


class UserCreate(Strict):
    username: str = Field(min_length=2, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    roles: list[str] = Field(default_factory=list, max_length=20)


class RolesIn(Strict):
    roles: list[str] = Field(max_length=20)
    reason: str = Field(min_length=1, max_length=2000, description="Why the roles change (kept in the audit log)")


class ActiveIn(Strict):
    is_active: bool


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    days: int = Field(default=90, ge=1, le=tokens.MAX_DAYS, description="Days until the token expires (1-366)")
    scopes: list[Permission] | None = Field(
        default=None, max_length=len(Permission),
        description="The permissions the token may use; each must be one you hold. Omit for all you hold.")
    read_only: bool = Field(default=False, description="Refuse every request except GET")


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    scopes: list[str]
    read_only: bool

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        return cls(id=token.id, name=token.name, prefix=token.prefix, created_at=token.created_at,
                   expires_at=token.expires_at, last_used_at=token.last_used_at, revoked_at=token.revoked_at,
                   scopes=list(token.scopes), read_only=token.read_only)


class TokenCreated(TokenOut):
    token: str = Field(description="The secret; shown once, never stored")


class AuditQuery(Strict):
    actor: str | None = Field(default=None, max_length=100)
    action: str | None = Field(default=None, max_length=100)
    object_type: str | None = Field(default=None, max_length=50)
    object_id: str | None = Field(default=None, max_length=100)
    since: QueryDate | None = None
    until: QueryDate | None = Field(default=None, description="inclusive")
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=2**31 - 1)


class AuditEventOut(BaseModel):
    seq: int
    occurred_at: dt.datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, e: AuditEvent) -> AuditEventOut:
        return cls(seq=e.seq, occurred_at=e.occurred_at, actor=e.actor_label, action=e.action,
                   object_type=e.object_type, object_id=e.object_id, details=e.details or {},
                   prev_hash=e.prev_hash, hash=e.hash)


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    bad_seq: int | None
    reason: str | None


class TotpPolicy(Strict):
    totp_required: list[str] = Field(max_length=20, description="Roles that must use a second factor")
    required_by_default: bool = Field(
        default=False, description="Whether a role with no policy of its own needs one (true in production)")


class TotpPolicyIn(Strict):
    totp_required: list[str] = Field(max_length=20, description="Roles that must use a second factor")
    reason: str | None = Field(default=None, max_length=500,
                               description="Why: required when any role that needs a second factor now would not")


def _day(value: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC) if value else None


@bp.get("/openapi.json")
@public
def openapi() -> Any:
    return jsonify(api.openapi("londonsde gateway API", VERSION))


@api.operation("/me", "GET", summary="The signed-in user, their roles and permissions", tag="identity",
               permission=Permission.USE_ACCOUNT, response=MeOut)
def me() -> MeOut:
    user = require_user()
    return MeOut(**UserOut.of(user).model_dump(), permissions=sorted(p.value for p in permissions_of(user)))


@api.operation("/tokens", "GET", summary="Your API tokens", tag="identity", permission=Permission.USE_ACCOUNT,
               response=TokenOut, response_is_list=True)
def list_tokens() -> list[TokenOut]:
    return [TokenOut.of(t) for t in tokens.list_tokens(db(), require_user())]


@api.operation("/tokens", "POST", summary="Create an API token (the secret is returned once)", tag="identity",
               permission=Permission.USE_ACCOUNT, body=TokenCreate, response=TokenCreated, status=201)
def create_token(body: TokenCreate) -> TokenCreated:
    user = require_user()
    scopes = None if body.scopes is None else [p.value for p in body.scopes]
    token, plain = run(tokens.create_token, user, user, body.name, body.days, scopes, body.read_only)
    return TokenCreated(**TokenOut.of(token).model_dump(), token=plain)


@api.operation("/tokens/<int:token_id>", "DELETE", summary="Revoke an API token", tag="identity",
               permission=Permission.USE_ACCOUNT, status=204)
def revoke_token(token_id: int) -> None:
    user = require_user()
    run(tokens.revoke_token, user, tokens.get_token(db(), user, token_id))


@api.operation("/users", "GET", summary="All accounts", tag="users", permission=Permission.MANAGE_USERS,
               response=UserOut, response_is_list=True)
def list_users() -> list[UserOut]:
    return [UserOut.of(u) for u in accounts.list_users(db(), require_user())]


@api.operation("/users", "POST", summary="Create a local account", tag="users",
               permission=Permission.MANAGE_USERS, body=UserCreate, response=UserOut, status=201)
def create_user(body: UserCreate) -> UserOut:
    user = run(accounts.create_local_user, require_user(), username=body.username,
               display_name=body.display_name, password=body.password, email=body.email, roles=body.roles)
    return UserOut.of(user)


@api.operation("/users/<int:user_id>", "GET", summary="One account", tag="users",
               permission=Permission.MANAGE_USERS, response=UserOut)
def get_user(user_id: int) -> UserOut:
    return UserOut.of(accounts.get_user(db(), user_id))


@api.operation("/users/<int:user_id>/roles", "PUT", summary="Replace a local account's roles (a reason is required)",
               tag="users", permission=Permission.MANAGE_USERS, body=RolesIn, response=UserOut, errors=(409,))
def set_roles(user_id: int, body: RolesIn) -> UserOut:
    target = accounts.get_user(db(), user_id)
    run(accounts.set_roles, require_user(), target, body.roles, body.reason)
    return UserOut.of(target)


@api.operation("/users/<int:user_id>/active", "PUT", summary="Activate or deactivate an account",
               tag="users", permission=Permission.MANAGE_USERS, body=ActiveIn, response=UserOut, errors=(409,))
def set_active(user_id: int, body: ActiveIn) -> UserOut:
    target = accounts.get_user(db(), user_id)
    run(accounts.set_active, require_user(), target, body.is_active)
    return UserOut.of(target)


@api.operation("/users/<int:user_id>/unlock", "POST", summary="Clear a sign-in lockout", tag="users",
               permission=Permission.MANAGE_USERS, response=UserOut)
def unlock_user(user_id: int) -> UserOut:
    target = accounts.get_user(db(), user_id)
    run(accounts.unlock, require_user(), target)
    return UserOut.of(target)


@api.operation("/users/<int:user_id>/second-factor", "DELETE", summary="Reset an account's second factor",
               tag="users", permission=Permission.MANAGE_USERS, response=UserOut)
def reset_second_factor(user_id: int) -> UserOut:
    target = accounts.get_user(db(), user_id)
    run(accounts.reset_second_factor, require_user(), target)
    return UserOut.of(target)


@api.operation("/security/totp-policy", "GET", summary="Roles that must use a second factor", tag="security",
               permission=Permission.MANAGE_SECURITY_POLICY, response=TotpPolicy)
def get_totp_policy() -> TotpPolicy:
    default = settings().second_factor_by_default
    return TotpPolicy(totp_required=sorted(r for r, req in accounts.role_policies(db(), default).items() if req),
                      required_by_default=default)


@api.operation("/security/totp-policy", "PUT", summary="Set the roles that must use a second factor",
               tag="security", permission=Permission.MANAGE_SECURITY_POLICY, body=TotpPolicyIn,
               response=TotpPolicy)
def put_totp_policy(body: TotpPolicyIn) -> TotpPolicy:
    """Relaxing a role (it needs a second factor now and would not after) needs a ``reason``; 422 without."""
    run(accounts.set_totp_required, require_user(), set(body.totp_required), settings().second_factor_by_default,
        body.reason or "")
    return get_totp_policy()


@api.operation("/audit/events", "GET", summary="Audit events, newest first, filtered", tag="audit",
               permission=Permission.VIEW_AUDIT_LOG, query=AuditQuery, response=AuditEventOut,
               response_is_list=True)
@records_download("audit_log")
def audit_events(query: AuditQuery) -> list[AuditEventOut]:
    problems = {name: [message] for name, day in (("since", query.since), ("until", query.until))
                if day is not None and (message := dates.outside(day))}
    if problems:
        raise ValidationError("The request is not valid.", field_errors=problems)
    if query.since and query.until and query.until < query.since:
        raise ValidationError("The request is not valid.", field_errors={"until": ["must not be before since"]})
    filters = audit.AuditFilter(actor=query.actor, action=query.action, object_type=query.object_type,
                                object_id=query.object_id, since=_day(query.since),
                                until=_day(query.until + dt.timedelta(days=1)) if query.until else None)
    return [AuditEventOut.of(e) for e in audit.search(db(), filters, limit=query.limit, offset=query.offset)]


@api.operation("/audit/verify", "GET", summary="Verify the audit hash chain", tag="audit",
               permission=Permission.VIEW_AUDIT_LOG, response=VerifyOut)
def audit_verify() -> VerifyOut:
    result = audit.verify(db())
    return VerifyOut(ok=result.ok, checked=result.checked, bad_seq=result.bad_seq, reason=result.reason)
