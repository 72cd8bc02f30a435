"""Creating accounts and managing their roles, locks and second factors (all audited)."""

from __future__ import annotations

import re

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from gateway import audit
from gateway.audit import Actor
from gateway.db import utcnow
from gateway.errors import Conflict, NotFound, ValidationError
from gateway.identity.ldap_directory import DirectoryImplausible, DirectoryUser, LdapDirectory
from gateway.identity.passwords import hash_password, password_problems
from gateway.identity.sessions import bump_session_version, end_sessions
from gateway.models import RecoveryCode, RolePolicy, User, UserRole
from gateway.permissions import Permission, Role, check_can_change_roles, check_permission, parse_roles

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
# The names the audit log gives the gateway's own events (audit.SYSTEM, an account made from the directory): a person
# with one of them would have their acts read, and found by the auditors' actor filter, as the gateway's.
RESERVED_USERNAMES = frozenset({"system", "ldap"})
RESERVED_MESSAGE = "That name is used by the gateway for its own events in the audit log; choose another."


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip().lower()))


def list_users(session: Session, actor: User) -> list[User]:
    check_permission(actor, Permission.MANAGE_USERS)
    return list(session.scalars(select(User).order_by(User.username)))


def _validate_new_user(session: Session, username: str, display_name: str, password: str,
                       email: str | None = None, check_strength: bool = True) -> None:
    errors: dict[str, list[str]] = {}
    if not USERNAME_RE.match(username):
        errors["username"] = ["Use 2 to 64 lower-case letters, digits, dots, hyphens or underscores, "
                              "starting with a letter."]
    elif username in RESERVED_USERNAMES:
        errors["username"] = [RESERVED_MESSAGE]
    elif find_user(session, username) is not None:
        errors["username"] = ["That username is already taken."]
    if not display_name.strip():
        errors["display_name"] = ["Enter the person's full name."]
    problems = password_problems(password, username, (display_name, (email or "").split("@")[0]))
    if problems and check_strength:
        errors["password"] = problems
    if errors:
        raise ValidationError("The account could not be created.", field_errors=errors)


def create_local_user(session: Session, actor: Actor, *, username: str, display_name: str, password: str,
                      email: str | None = None, roles: list[str] | tuple[str, ...] = (),
                      is_demo: bool = False, password_hash: str | None = None) -> User:
    """Create a local (password) account. ``actor`` is an admin user, or a label for the CLI.

    Someone else chose the password, so the person must choose their own at first sign-in. Demo accounts
    (``is_demo``) share the public demo password, are exempt from both rules, and exist only outside
    production; ``password_hash`` lets demo seeding reuse one hash of it.
    """
    if isinstance(actor, User):
        check_permission(actor, Permission.MANAGE_USERS)
    username = username.strip().lower()
    _validate_new_user(session, username, display_name, password, email, check_strength=not is_demo)
    wanted = parse_roles(roles)
    user = User(username=username, display_name=display_name.strip(), email=(email or None), source="local",
                password_hash=password_hash or hash_password(password), is_demo=is_demo,
                must_change_password=not is_demo)
    user.role_grants = [UserRole(role=r.value, granted_by_id=actor.id if isinstance(actor, User) else None)
                        for r in sorted(wanted)]
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.created", "user", user.id,
                 {"username": username, "source": "local", "roles": sorted(r.value for r in wanted),
                  "must_change_password": user.must_change_password})
    return user


def set_roles(session: Session, actor: User, target: User, roles: list[str], reason: str) -> None:
    """An administrator's change of somebody's roles, with the reason for the record (required)."""
    check_can_change_roles(actor, target)
    if target.source != "local":
        raise Conflict("This account's roles come from the directory (LDAP groups); change them there.")
    wanted = {r.value for r in parse_roles(roles)}
    if not reason.strip():
        raise ValidationError("The roles could not be changed.",
                              field_errors={"reason": ["Say why these roles are changing."]})
    _replace_roles(session, actor, target, wanted, via="admin", reason=reason.strip())


def _replace_roles(session: Session, actor: Actor, target: User, wanted: set[str], via: str,
                   reason: str | None = None) -> None:
    current = set(target.roles)
    if wanted == current:
        return
    target.role_grants = [g for g in target.role_grants if g.role in wanted]
    granted_by = actor.id if isinstance(actor, User) else None
    for role in sorted(wanted - current):
        target.role_grants.append(UserRole(role=role, granted_by_id=granted_by))
    bump_session_version(target)  # roles changed: sessions must pick up the new rights
    session.flush()
    details = {"added": sorted(wanted - current), "removed": sorted(current - wanted), "via": via}
    if reason is not None:
        details["reason"] = reason
    audit.record(session, actor, "user.roles_changed", "user", target.id, details)


def sync_directory_roles(session: Session, target: User, roles: set[str]) -> None:
    """LDAP groups are the source of truth for directory accounts."""
    known = {r.value for r in Role}
    _replace_roles(session, "ldap", target, roles & known, via="directory groups")


def directory_entry_problem(session: Session, user: User | None, found: DirectoryUser) -> str | None:
    """Why the directory entry ``found`` may not sign in as ``user`` (the account its username names, or None for a new
    one), as the audit action of the refusal; None when it may. An account belongs to the entry it was made from:
    another entry holding the username later (a name the organisation freed and gave to somebody else) is refused,
    and so is a second account for an entry that has one already (its username renamed in the directory: one
    person must never be two reviewers)."""
    if user is not None and user.source != "ldap":
        return None  # a local account never reaches the directory
    if user is not None and user.directory_entry_id is not None:
        return None if user.directory_entry_id == found.entry_id else "auth.refused_directory_entry_changed"
    owner = session.scalar(select(User).where(User.directory_entry_id == found.entry_id))
    if owner is not None and (user is None or owner.id != user.id):
        return "auth.refused_directory_entry_taken"
    return None


def bind_directory_entry(session: Session, user: User, found: DirectoryUser) -> None:
    """Record the entry an account made before entries were remembered (migration 0024) belongs to: the one holding
    its username when it is next seen."""
    if user.directory_entry_id is None:
        user.directory_entry_id = found.entry_id
        audit.record(session, "ldap", "user.directory_entry_recorded", "user", user.id,
                     {"dn": found.dn, "entry_id": found.entry_id})


# More entries than this (and than a tenth of the directory accounts) missing in one pass is taken for a fault in the
# directory or its settings, not for people leaving: an administrator deactivates that many by hand.
MAX_GONE_PER_PASS = 3


def sync_directory_accounts(session: Session, directory: LdapDirectory) -> dict[str, int]:
    """The worker's reading of the directory, on every pass: every active directory account gets the roles its
    groups give it now, and is deactivated when its entry is gone (or its username now belongs to another entry).
    Roles were otherwise read only at a sign-in, which an API token never makes: a token kept a committee role the
    directory had taken away, and a person deleted from the directory kept a working token. Raises
    DirectoryUnavailable, changing nothing, when the directory cannot be read."""
    accounts = list(session.scalars(select(User).where(User.source == "ldap", User.is_active.is_(True))
                                    .order_by(User.id)))
    if not accounts:
        return {"synced": 0, "deactivated": 0}
    entries = directory.look_up([a.username for a in accounts])
    gone = sum(1 for a in accounts if a.username in entries and entries[a.username] is None)
    if gone > max(MAX_GONE_PER_PASS, len(accounts) // 10):
        raise DirectoryImplausible(f"{gone} of {len(accounts)} directory accounts' entries are missing at once; nobody "
                                   "was deactivated (check ldap.user_base and what the service account can read)")
    deactivated = synced = 0
    for account in accounts:
        if account.username not in entries:
            continue  # two entries hold the name: the directory must be put right; nothing is decided on it
        found = entries[account.username]
        problem = "no longer in the directory" if found is None else (
            "its username now belongs to another directory entry"
            if directory_entry_problem(session, account, found) else None)
        if problem is not None:
            account.is_active = False
            bump_session_version(account)
            audit.record(session, "ldap", "user.deactivated", "user", account.id, {"reason": problem})
            deactivated += 1
            continue
        assert found is not None
        bind_directory_entry(session, account, found)
        sync_directory_roles(session, account, directory.roles_for(found))
        synced += 1
    session.flush()
    return {"synced": synced, "deactivated": deactivated}


def set_active(session: Session, actor: User, target: User, active: bool) -> None:
    check_permission(actor, Permission.MANAGE_USERS)
    if actor.id == target.id:
        raise Conflict("You cannot deactivate your own account.")
    if target.is_active == active:
        return
    target.is_active = active
    bump_session_version(target)
    audit.record(session, actor, "user.activated" if active else "user.deactivated", "user", target.id)


def unlock(session: Session, actor: User, target: User) -> None:
    check_permission(actor, Permission.MANAGE_USERS)
    target.failed_logins = 0
    target.locked_until = None
    audit.record(session, actor, "user.unlocked", "user", target.id)


def reset_second_factor(session: Session, actor: User, target: User) -> None:
    """For a lost phone: the user enrols again at next sign-in (if their role requires it)."""
    check_permission(actor, Permission.MANAGE_USERS)
    target.totp_secret = None
    target.totp_confirmed_at = None
    target.totp_last_step = None
    for code in session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == target.id)):
        session.delete(code)
    bump_session_version(target)
    audit.record(session, actor, "user.second_factor_reset", "user", target.id)


def set_temporary_password(session: Session, operator: str, target: User, password: str) -> int:
    """For a forgotten password, from the server (``sde user set-password``; ``operator`` is its label): a password
    the person must replace at their next sign-in, as with a new account. Every session of the person ends (returns
    how many) and a lock from failed sign-ins is lifted; their second factor stays, so the temporary password alone
    does not sign anyone in as a person who has one.

    There is no such form on the pages: an administrator who could both reset someone's second factor and set their
    password could become that person (an output checker, say) alone. Someone who can run commands on the server can
    already change the database, so the command adds no power. Directory accounts' passwords belong to the
    directory."""
    if target.source != "local":
        raise Conflict("This account's password belongs to the organisation's directory (LDAP): reset it there.")
    problems = password_problems(password, target.username, (target.display_name, (target.email or "").split("@")[0]))
    if problems:
        raise ValidationError("The password could not be set.", field_errors={"password": problems})
    # the row locked and read again, so a password change committed meanwhile loses no session version (FOR NO KEY
    # UPDATE: a sign-in may still add its session row, whose generation the new version then ends)
    session.refresh(target, with_for_update={"key_share": True})
    unlocked = target.locked_until is not None  # locked out while trying to remember it: the reset lets them in
    target.password_hash = hash_password(password)
    target.must_change_password = True
    target.failed_logins, target.locked_until = 0, None
    ended = end_sessions(session, target, "password reset on the server")
    audit.record(session, operator, "user.password_reset", "user", target.id,
                 {"sessions_ended": ended, "unlocked": unlocked})
    return ended


def role_policies(session: Session, default: bool) -> dict[str, bool]:
    """Whether each role needs a second factor: its own policy row, else ``default`` (on in production)."""
    stored = {p.role: p.totp_required for p in session.scalars(select(RolePolicy))}
    return {role.value: stored.get(role.value, default) for role in Role}


def relaxations(session: Session, default: bool) -> list[RolePolicy]:
    """The roles excused from a default second factor, with who excused them, when and why."""
    if not default:
        return []
    return list(session.scalars(select(RolePolicy).where(RolePolicy.totp_required.is_(False))
                                .order_by(RolePolicy.role)))


def relaxed_by(session: Session, required_roles: set[str], default: bool) -> list[str]:
    """The roles that need a second factor now and would not under ``required_roles``."""
    before = role_policies(session, default)
    return sorted(role for role, required in before.items() if required and role not in required_roles)


def set_totp_required(session: Session, actor: User, required_roles: set[str], default: bool = False,
                      reason: str = "") -> None:
    """Set which roles need a second factor. Relaxing any role (on for it now, off after) needs a reason,
    kept with the policy and in the audit event; tightening needs none."""
    check_permission(actor, Permission.MANAGE_SECURITY_POLICY)
    parse_roles(required_roles)
    reason = reason.strip()
    before = role_policies(session, default)
    after = {role.value: role.value in required_roles for role in Role}
    relaxed = sorted(r for r in after if before[r] and not after[r])
    tightened = sorted(r for r in after if after[r] and not before[r])
    if relaxed and not reason:
        raise ValidationError("Say why these roles may sign in without a second factor.",
                              field_errors={"reason": ["Give the reason for relaxing the policy "
                                                       f"({', '.join(relaxed)}); it is kept in the audit log."]})
    if len(reason) > 500:
        raise ValidationError("The reason is too long.", field_errors={"reason": ["Use at most 500 characters."]})
    if not relaxed and not tightened:
        return
    now = utcnow()
    for role in Role:
        policy = session.get(RolePolicy, role.value)
        if after[role.value] == default:  # back to the default: nothing to keep
            if policy is not None:
                session.delete(policy)
            continue
        if policy is None or policy.totp_required != after[role.value]:
            policy = policy or RolePolicy(role=role.value)
            policy.totp_required = after[role.value]
            policy.reason = reason if role.value in relaxed else None
            policy.changed_by_id, policy.changed_at = actor.id, now
            session.add(policy)
    session.flush()
    audit.record(session, actor, "security.totp_policy_changed", "role_policy", None,
                 {"totp_required": sorted(r for r, req in after.items() if req), "relaxed": relaxed,
                  "tightened": tightened, "reason": reason or None, "default": default})


def totp_required_for(session: Session, user: User, default: bool = False) -> bool:
    policies = role_policies(session, default)
    if not user.roles:
        return default  # an account with no role yet follows the default too
    return any(policies.get(role, default) for role in user.roles)


def record_login_time(user: User) -> None:
    user.last_login_at = utcnow()


def sign_out_everywhere(session: Session, user: User) -> None:
    ended = end_sessions(session, user, "signed out everywhere")
    audit.record(session, user, "auth.signed_out_everywhere", "user", user.id, {"sessions_ended": ended})


# built once per process (SQLAlchemy keeps a built statement's cache key): the chair's application page asks each view
_WITH_ROLES = (select(User).where(User.role_grants.any(UserRole.role.in_(bindparam("roles", expanding=True))),
                                  User.is_active.is_(True))
               .order_by(User.display_name, User.id).options(joinedload(User.role_grants)))  # their roles, same query


def users_with_roles(session: Session, roles: list[str]) -> list[User]:
    """Active users holding any of ``roles``, by name."""
    return list(session.scalars(_WITH_ROLES, {"roles": list(roles)}).unique())
