"""Personal API tokens: shown once, stored only as a SHA-256 hash (they are random, not passwords)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from gateway import audit
from gateway.audit import Actor
from gateway.db import utcnow
from gateway.errors import NotFound, ValidationError
from gateway.models import ApiToken, User
from gateway.permissions import Permission, can_revoke_token, check_can_revoke_token, permissions_of

TOKEN_PREFIX = "sde_"  # noqa: S105 - a public marker, not a secret
MAX_DAYS = 366  # every token expires: a leaked one stops working within a year at most


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def grantable_scopes(owner: User) -> list[Permission]:
    """The scopes a new token of this owner may carry: what their roles grant now, and, when the request
    itself came with a token, no more than that token's scopes (a token cannot mint a wider one, nor, in
    ``create_token``, one that expires later)."""
    held = permissions_of(owner)
    return [p for p in Permission if p in held]


def create_token(session: Session, actor: Actor, owner: User, name: str, days: int = 90,
                 scopes: list[str] | None = None, read_only: bool = False) -> tuple[ApiToken, str]:
    """``scopes`` None means every scope the owner may grant; an explicit list must be a non-empty subset."""
    errors: dict[str, list[str]] = {}
    name = name.strip()
    if not name or len(name) > 100:
        errors["name"] = ["Give the token a name of up to 100 characters."]
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        errors["days"] = [f"Choose between 1 and {MAX_DAYS} days: every token expires."]
    # A token making a token (signing-in.md) never makes one that outlives it, or a leaked token renews itself for
    # ever: the new one expires when it was asked to, or with its maker, whichever is sooner.
    maker_expires = actor.token_expires_at if isinstance(actor, User) else None
    allowed = grantable_scopes(owner)
    chosen = [p.value for p in allowed] if scopes is None else list(dict.fromkeys(scopes))
    known, held = {p.value for p in Permission}, {p.value for p in allowed}
    unknown = [s for s in chosen if s not in known]
    not_held = [s for s in chosen if s in known and s not in held]
    if unknown:
        errors["scopes"] = [f"There is no scope called {', '.join(repr(s) for s in unknown)}."]
    elif not_held:
        errors["scopes"] = [f"You cannot give a token a scope you do not hold: {', '.join(not_held)}."]
    elif not chosen:
        errors["scopes"] = ["Choose at least one scope."]
    if errors:
        raise ValidationError("The token could not be created.", field_errors=errors)
    expires = utcnow() + dt.timedelta(days=days)
    if maker_expires is not None and maker_expires < expires:
        expires = maker_expires
    secret = secrets.token_urlsafe(32)
    plain = f"{TOKEN_PREFIX}{secret}"
    token = ApiToken(user_id=owner.id, name=name, prefix=plain[:10], token_hash=_hash(plain),
                     expires_at=expires, parent_token_id=getattr(actor, "token_id", None),
                     scopes=sorted(chosen), read_only=read_only)
    session.add(token)
    session.flush()
    audit.record(session, actor, "token.created", "api_token", token.id,
                 {"owner": owner.username, "name": name, "expires_at": token.expires_at,
                  "scopes": token.scopes, "read_only": read_only})
    return token, plain


def list_tokens(session: Session, owner: User) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == owner.id)
                                .order_by(ApiToken.created_at.desc())))


def get_token(session: Session, actor: User, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or not can_revoke_token(actor, token):
        raise NotFound("No such token.")  # someone else's token answers exactly like a missing one
    return token


def revoke_token(session: Session, actor: User, token: ApiToken, operator: str | None = None) -> None:
    """``operator``: who ran ``sde token revoke`` (gateway.identity.operator), when ``actor`` is only the person the
    command named with ``--by``; the audit event is then the command's, with that name as a claim beside it."""
    check_can_revoke_token(actor, token)
    if token.revoked_at is not None:
        return
    now, revoked, parents = utcnow(), [], [token]
    while parents:  # the token, and every token made with it, and with those
        for item in parents:
            item.revoked_at = now
            item.revoked_by_id = actor.id
            revoked.append(item)
        parents = list(session.scalars(select(ApiToken).where(
            ApiToken.parent_token_id.in_([p.id for p in parents]), ApiToken.revoked_at.is_(None))))
    for item in revoked:
        details: dict[str, Any] = {"owner_id": item.user_id}
        if item is not token:
            details["made_by_token"] = item.parent_token_id
        if operator is not None:
            details["by"] = actor.username
        audit.record(session, operator if operator is not None else actor, "token.revoked", "api_token", item.id,
                     details)


# The statement every API request sends, built once per process (see gateway.identity.sessions): the token, its
# owner and the owner's roles in one statement.
_TOKEN_AND_OWNER = (select(ApiToken).options(joinedload(ApiToken.user).joinedload(User.role_grants))
                    .where(ApiToken.token_hash == bindparam("token_hash")))


def user_for_token(session: Session, plain: str) -> User | None:
    """The active owner of a valid, unexpired, unrevoked token, else None. The owner comes back narrowed
    to the token's scopes (and marked read-only if it is) for the rest of the request."""
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 200:
        return None
    token = session.scalar(_TOKEN_AND_OWNER, {"token_hash": _hash(plain)})
    now = utcnow()
    # A token with no expiry is refused too: none can be made any more, and migration 0009 dated the old ones.
    if token is None or token.revoked_at is not None or token.expires_at is None or token.expires_at <= now:
        return None
    if not token.user.is_active:
        return None
    token.user.token_scopes = frozenset(token.scopes)
    token.user.token_read_only = token.read_only
    token.user.token_expires_at = token.expires_at
    token.user.token_id = token.id
    # Access bookkeeping, not a change of anything a user decided: not audited, written at most hourly.
    if token.last_used_at is None or now - token.last_used_at > dt.timedelta(hours=1):
        token.last_used_at = now
    return token.user
