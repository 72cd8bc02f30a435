"""Who may see an accreditation and who may decide it."""

from __future__ import annotations

import pytest

from gateway.errors import PermissionDenied
from gateway.models import User, UserRole
from gateway.permissions import (
    Role,
    can_decide_accreditation,
    can_view_accreditation,
    check_can_decide_accreditation,
    check_can_view_accreditation,
)
from projects.models import Accreditation


def user(uid: int, *roles: Role) -> User:
    u = User(id=uid, username=f"u{uid}", display_name="U", source="local", password_hash="x", is_active=True)
    u.role_grants = [UserRole(role=r.value) for r in roles]
    return u


OWNER = user(1, Role.RESEARCHER)
OTHER_RESEARCHER = user(2, Role.RESEARCHER)
OFFICER = user(3, Role.ACCREDITATION_OFFICER)
ADMIN = user(4, Role.ADMIN)
RECORD = Accreditation(id=10, user_id=OWNER.id, status="pending")


def test_owner_and_officers_see_a_record_others_do_not() -> None:
    assert can_view_accreditation(OWNER, RECORD) and can_view_accreditation(OFFICER, RECORD)
    for outsider in (OTHER_RESEARCHER, ADMIN, user(5, Role.DAC_CHAIR), user(6, Role.AUDITOR)):
        assert not can_view_accreditation(outsider, RECORD)
        with pytest.raises(PermissionDenied):
            check_can_view_accreditation(outsider, RECORD)


def test_only_officers_decide_and_never_their_own() -> None:
    assert can_decide_accreditation(OFFICER, RECORD)
    assert not can_decide_accreditation(OWNER, RECORD) and not can_decide_accreditation(ADMIN, RECORD)
    both = user(7, Role.RESEARCHER, Role.ACCREDITATION_OFFICER)
    own = Accreditation(id=11, user_id=both.id, status="pending")
    assert can_view_accreditation(both, own) and not can_decide_accreditation(both, own)
    with pytest.raises(PermissionDenied, match="own accreditation"):
        check_can_decide_accreditation(both, own)
    with pytest.raises(PermissionDenied, match="Only accreditation officers"):
        check_can_decide_accreditation(OWNER, RECORD)
    check_can_decide_accreditation(both, RECORD)  # someone else's: allowed
