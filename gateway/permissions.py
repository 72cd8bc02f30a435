"""Who may do what: the single role -> permission table and the per-object rules.

Views and API endpoints never test roles themselves. They name a permission (checked against
``ROLE_PERMISSIONS``) and, for a particular object, call a paired rule: ``check_can_x`` raises
:class:`PermissionDenied`, ``can_x`` answers a bool for templates.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.errors import PermissionDenied

if TYPE_CHECKING:
    from gateway.models import ApiToken, User
    from gateway.workspaces.models import PackageRequest
    from projects.models import Accreditation


class Role(StrEnum):
    RESEARCHER = "researcher"
    ACCREDITATION_OFFICER = "accreditation_officer"
    DAC_MEMBER = "dac_member"
    DAC_CHAIR = "dac_chair"
    LAY_MEMBER = "lay_member"
    OUTPUT_CHECKER = "output_checker"
    FINANCE = "finance"
    ADMIN = "admin"
    AUDITOR = "auditor"


ROLE_LABELS: dict[Role, str] = {
    Role.RESEARCHER: "Researcher",
    Role.ACCREDITATION_OFFICER: "Accreditation officer",
    Role.DAC_MEMBER: "Data access committee member",
    Role.DAC_CHAIR: "Data access committee chair",
    Role.LAY_MEMBER: "Lay member of the data access committee",
    Role.OUTPUT_CHECKER: "Output checker",
    Role.FINANCE: "Finance",
    Role.ADMIN: "Administrator",
    Role.AUDITOR: "Auditor",
}


class Permission(StrEnum):
    # every signed-in user
    USE_ACCOUNT = "use_account"
    # administration
    MANAGE_USERS = "manage_users"
    MANAGE_SECURITY_POLICY = "manage_security_policy"
    MANAGE_ORGANISATIONS = "manage_organisations"
    MANAGE_AGREEMENTS = "manage_agreements"
    MANAGE_PROJECTS = "manage_projects"  # suspend, reinstate, revoke
    RECORD_INCIDENTS = "record_incidents"  # the published incidents log on the front door
    RELEASE_EXTRACTS = "release_extracts"  # the data custodian's part: build, refresh, release held extracts
    # oversight
    VIEW_AUDIT_LOG = "view_audit_log"
    # safe people
    RECORD_ACCREDITATION = "record_accreditation"
    VERIFY_ACCREDITATION = "verify_accreditation"
    # safe projects
    VIEW_PROJECTS = "view_projects"  # which ones is decided per object
    APPLY = "apply"
    REVIEW_APPLICATIONS = "review_applications"
    CHAIR_DAC = "chair_dac"
    # safe outputs
    REQUEST_OUTPUTS = "request_outputs"  # on projects they belong to (decided per object)
    REVIEW_OUTPUTS = "review_outputs"  # never their own request or their own projects' (decided per object)
    # charging
    MANAGE_CHARGES = "manage_charges"  # invoices, payments, credit notes, budgets, the finance dashboard
    # safe settings: the software in the workspace
    REQUEST_PACKAGES = "request_packages"
    MANAGE_PACKAGES = "manage_packages"  # approve or refuse package requests


# What each permission lets a person do, in words; also the scopes an API token can be given.
PERMISSION_LABELS: dict[Permission, str] = {
    Permission.USE_ACCOUNT: "Your account: see it and manage your API tokens",
    Permission.MANAGE_USERS: "Manage users and their roles",
    Permission.MANAGE_SECURITY_POLICY: "Set the security policy (second factor per role)",
    Permission.MANAGE_ORGANISATIONS: "Manage organisations",
    Permission.MANAGE_AGREEMENTS: "Publish data access agreements",
    Permission.MANAGE_PROJECTS: "Suspend, reinstate and revoke projects",
    Permission.RECORD_INCIDENTS: "Record incidents and breaches in the published log",
    Permission.RELEASE_EXTRACTS: "Build, refresh and release extracts",
    Permission.VIEW_AUDIT_LOG: "Read and export the audit log",
    Permission.RECORD_ACCREDITATION: "Record your accreditation",
    Permission.VERIFY_ACCREDITATION: "Verify or reject accreditations",
    Permission.VIEW_PROJECTS: "See the projects and applications you may see",
    Permission.APPLY: "Write, submit and amend applications",
    Permission.REVIEW_APPLICATIONS: "Review applications and vote",
    Permission.CHAIR_DAC: "Chair the committee: assign reviewers and decide",
    Permission.REQUEST_OUTPUTS: "Make output requests",
    Permission.REVIEW_OUTPUTS: "Check output requests",
    Permission.MANAGE_CHARGES: "Invoices, payments, credit notes and budgets",
    Permission.REQUEST_PACKAGES: "Ask for a package in the workspace",
    Permission.MANAGE_PACKAGES: "Approve or refuse package requests",
}

_EVERYONE: frozenset[Permission] = frozenset({Permission.USE_ACCOUNT, Permission.VIEW_PROJECTS})
_DAC = _EVERYONE | {Permission.REVIEW_APPLICATIONS}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.RESEARCHER: _EVERYONE | {Permission.RECORD_ACCREDITATION, Permission.APPLY, Permission.REQUEST_OUTPUTS,
                                  Permission.REQUEST_PACKAGES},
    Role.ACCREDITATION_OFFICER: _EVERYONE | {Permission.VERIFY_ACCREDITATION},
    Role.DAC_MEMBER: _DAC,
    Role.DAC_CHAIR: _DAC | {Permission.CHAIR_DAC},
    Role.LAY_MEMBER: _DAC,
    Role.OUTPUT_CHECKER: _EVERYONE | {Permission.REVIEW_OUTPUTS},
    Role.FINANCE: _EVERYONE | {Permission.MANAGE_CHARGES},
    Role.ADMIN: _EVERYONE | {Permission.MANAGE_USERS, Permission.MANAGE_SECURITY_POLICY,
                             Permission.MANAGE_ORGANISATIONS, Permission.MANAGE_AGREEMENTS,
                             Permission.MANAGE_PROJECTS, Permission.RELEASE_EXTRACTS, Permission.RECORD_INCIDENTS,
                             Permission.MANAGE_PACKAGES},
    Role.AUDITOR: _EVERYONE | {Permission.VIEW_AUDIT_LOG},
}


def parse_roles(names: Iterable[str]) -> set[Role]:
    """Turn role names into roles, refusing unknown names rather than silently dropping them."""
    roles: set[Role] = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            raise PermissionDenied(f"unknown role {name!r}") from None
    return roles


def role_permissions_of(user: User | None) -> frozenset[Permission]:
    """What the user's roles grant, whatever token the request came with."""
    if user is None or not user.is_active:
        return frozenset()
    granted: set[Permission] = set()
    for name in user.roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(name)]
        except ValueError:
            continue  # a role removed from the code grants nothing
    return frozenset(granted)


def permissions_of(user: User | None) -> frozenset[Permission]:
    """What the user's roles grant, narrowed to the token's scopes when the request came with an API token."""
    granted = role_permissions_of(user)
    if user is not None and user.token_scopes is not None:
        granted = frozenset(p for p in granted if p.value in user.token_scopes)
    return granted


def has_permission(user: User | None, permission: Permission) -> bool:
    return permission in permissions_of(user)


def check_permission(user: User | None, permission: Permission) -> None:
    if not has_permission(user, permission):
        raise PermissionDenied("You do not have permission to do this.")


def account_data_access_problem(user: User) -> str | None:
    """Why this account may not work with data in a workspace now, or None. Judged on the account itself (never a
    token's scopes): it must be active and its roles must make it a researcher (the role that makes output requests
    and works in workspaces). The workspace entitlement asks it at every start and the worker's sweep at every pass,
    so deactivating an account, or taking its researcher role away, stops its running workspaces too."""
    if not user.is_active:
        return "Your account is deactivated."
    if Permission.REQUEST_OUTPUTS not in role_permissions_of(user):
        return "Your account does not have the researcher role."
    return None


def sits_on_committee(user: User) -> bool:
    """Whether the person is a member of the data access committee now: an active account whose roles (never a
    token's scopes) let it review applications. A vote counts towards a quorum only while this holds."""
    return Permission.REVIEW_APPLICATIONS in role_permissions_of(user)


# --- per-object rules -------------------------------------------------------------------------

def can_change_roles(actor: User, target: User) -> bool:
    """Administrators manage roles, but never their own (no self-granted oversight or lock-out)."""
    return has_permission(actor, Permission.MANAGE_USERS) and actor.id != target.id


def check_can_change_roles(actor: User, target: User) -> None:
    if not can_change_roles(actor, target):
        raise PermissionDenied("Administrators cannot change their own roles." if actor.id == target.id
                               else "You do not have permission to change roles.")


def can_change_organisation(actor: User, target: User) -> bool:
    """Administrators record who works where, but never for themselves: the organisation decides who is recused from
    an application (docs/dac.md) and who may supervise a provisional accreditation, as roles decide oversight."""
    return has_permission(actor, Permission.MANAGE_ORGANISATIONS) and actor.id != target.id


def check_can_change_organisation(actor: User, target: User) -> None:
    if not can_change_organisation(actor, target):
        raise PermissionDenied("Administrators cannot change their own organisation." if actor.id == target.id
                               else "You do not have permission to change organisations.")


def can_revoke_token(actor: User, token: ApiToken) -> bool:
    return token.user_id == actor.id or has_permission(actor, Permission.MANAGE_USERS)


def check_can_revoke_token(actor: User, token: ApiToken) -> None:
    if not can_revoke_token(actor, token):
        raise PermissionDenied("You cannot revoke this token.")


def can_view_accreditation(actor: User, accreditation: Accreditation) -> bool:
    """A researcher sees their own records (and certificates); accreditation officers see everyone's."""
    return accreditation.user_id == actor.id or has_permission(actor, Permission.VERIFY_ACCREDITATION)


def check_can_view_accreditation(actor: User, accreditation: Accreditation) -> None:
    if not can_view_accreditation(actor, accreditation):
        raise PermissionDenied("You cannot see this accreditation.")


def can_decide_accreditation(actor: User, accreditation: Accreditation) -> bool:
    """Accreditation officers verify or reject, but never their own record."""
    return has_permission(actor, Permission.VERIFY_ACCREDITATION) and accreditation.user_id != actor.id


def check_can_decide_accreditation(actor: User, accreditation: Accreditation) -> None:
    if not can_decide_accreditation(actor, accreditation):
        officer = has_permission(actor, Permission.VERIFY_ACCREDITATION)
        raise PermissionDenied("Nobody can verify or reject their own accreditation." if officer
                               else "Only accreditation officers can verify or reject accreditations.")


# Package requests (gateway/workspaces/packages.py): who acts in each state. Only a request still waiting is decided,
# by an administrator, never on their own request; decided requests are final (a new request can follow).
PACKAGE_REQUEST_OWNERS: dict[str, Permission | None] = {
    "requested": Permission.MANAGE_PACKAGES,
    "approved": None,
    "refused": None,
}


def can_view_package_request(actor: User, package_request: PackageRequest) -> bool:
    return package_request.requested_by_id == actor.id or has_permission(actor, Permission.MANAGE_PACKAGES)


def can_decide_package_request(actor: User, package_request: PackageRequest) -> bool:
    owner = PACKAGE_REQUEST_OWNERS.get(package_request.state)
    return owner is not None and has_permission(actor, owner) and package_request.requested_by_id != actor.id


def check_can_decide_package_request(actor: User, package_request: PackageRequest) -> None:
    if not has_permission(actor, Permission.MANAGE_PACKAGES):
        raise PermissionDenied("Only administrators decide package requests.")
    if package_request.requested_by_id == actor.id:
        raise PermissionDenied("Nobody can decide their own package request.")
