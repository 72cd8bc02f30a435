"""The role -> permission table and the per-object rules."""

from __future__ import annotations

import pytest

from gateway.errors import PermissionDenied
from gateway.models import ApiToken, User, UserRole
from gateway.permissions import (
    ROLE_PERMISSIONS,
    Permission,
    Role,
    can_change_roles,
    can_revoke_token,
    check_can_change_roles,
    has_permission,
    parse_roles,
    permissions_of,
)


def user(uid: int, *roles: Role, active: bool = True) -> User:
    u = User(id=uid, username=f"u{uid}", display_name="U", source="local", password_hash="x", is_active=active)
    u.role_grants = [UserRole(role=r.value) for r in roles]
    return u


def test_every_role_is_in_the_table_and_every_permission_is_granted_to_someone() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    granted = set().union(*ROLE_PERMISSIONS.values())
    assert granted == set(Permission)


def test_permissions_are_the_union_of_roles() -> None:
    both = user(1, Role.ADMIN, Role.AUDITOR)
    assert permissions_of(both) == ROLE_PERMISSIONS[Role.ADMIN] | ROLE_PERMISSIONS[Role.AUDITOR]


def test_no_roles_and_inactive_users_have_no_permissions() -> None:
    assert permissions_of(user(1)) == frozenset()
    assert permissions_of(user(2, Role.ADMIN, active=False)) == frozenset()
    assert permissions_of(None) == frozenset()


def test_separation_of_duties_admin_is_not_auditor() -> None:
    assert not has_permission(user(1, Role.ADMIN), Permission.VIEW_AUDIT_LOG)
    assert not has_permission(user(1, Role.AUDITOR), Permission.MANAGE_USERS)


def test_admins_cannot_change_their_own_roles() -> None:
    admin, other = user(1, Role.ADMIN), user(2, Role.RESEARCHER)
    assert can_change_roles(admin, other)
    assert not can_change_roles(admin, admin)
    with pytest.raises(PermissionDenied):
        check_can_change_roles(admin, admin)
    assert not can_change_roles(other, admin)


def test_tokens_are_revoked_by_their_owner_or_an_admin() -> None:
    owner, stranger, admin = user(1, Role.RESEARCHER), user(2, Role.RESEARCHER), user(3, Role.ADMIN)
    token = ApiToken(id=9, user_id=1, name="t", prefix="sde_x", token_hash="h")
    assert can_revoke_token(owner, token)
    assert not can_revoke_token(stranger, token)
    assert can_revoke_token(admin, token)


def test_unknown_role_names_are_refused_not_dropped() -> None:
    assert parse_roles(["researcher", "auditor"]) == {Role.RESEARCHER, Role.AUDITOR}
    with pytest.raises(PermissionDenied):
        parse_roles(["researcher", "superuser"])
