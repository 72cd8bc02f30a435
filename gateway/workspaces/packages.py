"""The software in the workspace, and researchers' requests for more.

The approved software is two files an operator builds the workspace from: infra/jupyterhub/singleuser-requirements.txt
(Python, every package pinned `name==version`) and infra/jupyterhub/r-packages.txt (Debian packages for R). The
catalogue page lists them. A researcher asks for another package; an administrator approves or refuses it with a
reason (audited); an approved package reaches the workspaces when the operator adds it to the list and rebuilds
the environment (docs/operators.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.db import serialise, utcnow
from gateway.errors import Conflict, InvalidTransition, NotFound, ValidationError
from gateway.models import User
from gateway.permissions import (
    Permission,
    can_view_package_request,
    check_can_decide_package_request,
    check_permission,
)
from gateway.workspaces.models import PackageRequest

REPO = Path(__file__).resolve().parents[2]
PYTHON_REQUIREMENTS = REPO / "infra" / "jupyterhub" / "singleuser-requirements.txt"
R_PACKAGES = REPO / "infra" / "jupyterhub" / "r-packages.txt"

# The one mapping of labels shown to people.
ECOSYSTEM_LABELS: dict[str, str] = {"python": "Python (pip)", "r": "R (Debian package)"}
STATE_LABELS: dict[str, str] = {"requested": "Waiting for a decision", "approved": "Approved", "refused": "Refused"}
TRANSITIONS: dict[str, set[str]] = {"requested": {"approved", "refused"}, "approved": set(), "refused": set()}

# A Python distribution name (PEP 508), a Debian package name, and a version as either spells it.
NAME_RE = {"python": re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$"),
           "r": re.compile(r"^[a-z0-9][a-z0-9.+-]{1,99}$")}
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~:-]{0,49}$")
MAX_REASON = 2000


@dataclass(frozen=True)
class Package:
    ecosystem: str
    name: str
    version: str  # "" for a Debian package that follows the host's release


def canonical(ecosystem: str, name: str) -> str:
    """Names as pip compares them (PEP 503: case and runs of '-', '_', '.' do not matter); Debian's are exact."""
    return re.sub(r"[-_.]+", "-", name).lower() if ecosystem == "python" else name


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def parse_python(lines: list[str]) -> list[Package]:
    """Each line `name==version`; anything else is an unpinned requirement and refused (the environment must be
    reproducible, and what researchers are shown must be what they get)."""
    found = []
    for line in lines:
        name, sep, version = line.partition("==")
        if not sep or not NAME_RE["python"].match(name.strip()) or not VERSION_RE.match(version.strip()):
            raise ValueError(f"{PYTHON_REQUIREMENTS.name}: {line!r} is not pinned as name==version")
        found.append(Package("python", name.strip(), version.strip()))
    return found


def parse_r(lines: list[str]) -> list[Package]:
    found = []
    for line in lines:
        name, _, version = line.partition("=")
        if not NAME_RE["r"].match(name.strip()) or (version and not VERSION_RE.match(version.strip())):
            raise ValueError(f"{R_PACKAGES.name}: {line!r} is not a Debian package name (or name=version)")
        found.append(Package("r", name.strip(), version.strip()))
    return found


def approved_software() -> dict[str, list[Package]]:
    """What the workspace environment is built from, by ecosystem, sorted by name."""
    return {"python": sorted(parse_python(_lines(PYTHON_REQUIREMENTS)), key=lambda p: canonical("python", p.name)),
            "r": sorted(parse_r(_lines(R_PACKAGES)), key=lambda p: p.name)}


def request_package(session: Session, actor: User, ecosystem: str, name: str, version: str,
                    reason: str) -> PackageRequest:
    check_permission(actor, Permission.REQUEST_PACKAGES)
    ecosystem, name, version, reason = ecosystem.strip(), name.strip(), version.strip(), reason.strip()
    errors: dict[str, list[str]] = {}
    if ecosystem not in ECOSYSTEM_LABELS:
        errors["ecosystem"] = ["Choose Python or R."]
    elif not NAME_RE[ecosystem].match(name):
        errors["name"] = ["Enter the package's name as pip (Python) or apt (R: r-cran-...) knows it."]
    if version and not VERSION_RE.match(version):
        errors["version"] = ["Enter a version like 1.2.3, or leave it empty for the newest."]
    if not reason:
        errors["reason"] = ["Say what you need the package for."]
    elif len(reason) > MAX_REASON:
        errors["reason"] = [f"Keep it to {MAX_REASON} characters or fewer."]
    if not errors:
        wanted = canonical(ecosystem, name)
        if any(canonical(ecosystem, p.name) == wanted for p in approved_software()[ecosystem]):
            errors["name"] = [f"{name} is already in the workspace (see Software in the workspace)."]
    if errors:
        raise ValidationError("The package request could not be made.", field_errors=errors)
    # Two people asking for the same package at the same moment: the second sees the first's request.
    serialise(session, f"package-request:{ecosystem}:{canonical(ecosystem, name)}")
    waiting = session.scalars(select(PackageRequest).where(PackageRequest.ecosystem == ecosystem,
                                                           PackageRequest.state == "requested"))
    if any(canonical(ecosystem, other.name) == canonical(ecosystem, name) for other in waiting):
        raise Conflict(f"{name} has already been asked for and is waiting for a decision.")
    created = PackageRequest(requested_by_id=actor.id, ecosystem=ecosystem, name=name, version=version,
                             reason=reason, state="requested")
    session.add(created)
    session.flush()
    audit.record(session, actor, "package.requested", "package_request", created.id,
                 {"ecosystem": ecosystem, "name": name, "version": version})
    return created


def decide(session: Session, actor: User, package_request: PackageRequest, approve: bool,
           reason: str) -> PackageRequest:
    """Approve or refuse a waiting request; a refusal needs its reason (the researcher sees it)."""
    check_can_decide_package_request(actor, package_request)
    target = "approved" if approve else "refused"
    # Lock the row so two administrators deciding at once cannot both succeed.
    session.refresh(package_request, with_for_update=True)
    if target not in TRANSITIONS[package_request.state]:
        raise InvalidTransition(f"This request is already {STATE_LABELS[package_request.state].lower()}.")
    reason = reason.strip()
    if not approve and not reason:
        raise ValidationError("The request could not be refused.",
                              field_errors={"reason": ["Say why the package is refused."]})
    if len(reason) > MAX_REASON:
        raise ValidationError("The decision could not be recorded.",
                              field_errors={"reason": [f"Keep it to {MAX_REASON} characters or fewer."]})
    package_request.state = target
    package_request.decided_by_id, package_request.decided_at = actor.id, utcnow()
    package_request.decision_reason = reason or None
    session.flush()
    audit.record(session, actor, f"package.{target}", "package_request", package_request.id,
                 {"ecosystem": package_request.ecosystem, "name": package_request.name, "reason": reason})
    return package_request


def get_request(session: Session, actor: User, request_id: int) -> PackageRequest:
    found = session.get(PackageRequest, request_id)
    if found is None or not can_view_package_request(actor, found):
        raise NotFound("No such package request.")
    return found


def my_requests(session: Session, actor: User) -> list[PackageRequest]:
    return list(session.scalars(select(PackageRequest).where(PackageRequest.requested_by_id == actor.id)
                                .order_by(PackageRequest.id.desc())))


def queue(session: Session, actor: User) -> list[PackageRequest]:
    """Every request, waiting ones first (administrators)."""
    check_permission(actor, Permission.MANAGE_PACKAGES)
    rows = session.scalars(select(PackageRequest).order_by(PackageRequest.id.desc()))
    return sorted(rows, key=lambda r: r.state != "requested")
