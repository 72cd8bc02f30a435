"""Organisations (NHS bodies, universities, charities, public bodies, companies) and who belongs to which."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import Actor
from gateway.errors import Conflict, NotFound, ValidationError
from gateway.models import User
from gateway.permissions import Permission, check_can_change_organisation, check_permission
from projects.models import Organisation

ORG_TYPES: dict[str, str] = {
    "nhs": "NHS organisation",
    "academic": "University or research institute",
    "charity": "Charity",
    "public_sector": "Public sector body",
    "commercial": "Commercial company",
}


def _check(actor: Actor) -> None:
    """People need the permission; labelled system actors (demo seeding, the CLI) are trusted callers."""
    if isinstance(actor, User):
        check_permission(actor, Permission.MANAGE_ORGANISATIONS)


def list_organisations(session: Session, actor: User) -> list[Organisation]:
    check_permission(actor, Permission.MANAGE_ORGANISATIONS)
    return list(session.scalars(select(Organisation).order_by(Organisation.name)))


def member_counts(session: Session) -> dict[int, int]:
    rows = session.execute(select(User.organisation_id, func.count(User.id))
                           .where(User.organisation_id.is_not(None)).group_by(User.organisation_id))
    return {org_id: count for org_id, count in rows}


def get_organisation(session: Session, organisation_id: int) -> Organisation:
    organisation = session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound("No such organisation.")
    return organisation


def find_organisation(session: Session, name: str) -> Organisation | None:
    return session.scalar(select(Organisation).where(func.lower(Organisation.name) == name.strip().lower()))


def members(session: Session, organisation: Organisation) -> list[User]:
    return list(session.scalars(select(User).where(User.organisation_id == organisation.id)
                                .order_by(User.display_name)))


# A ROR identifier (https://ror.org/): a leading 0, six characters and a two-digit checksum.
_ROR = re.compile(r"^https://ror\.org/0[a-hj-km-np-tv-z0-9]{6}[0-9]{2}$")


def normalise_identifier(text: str | None) -> str | None:
    """A ROR id as its canonical URL ("05bd7c1" style ids, "ror.org/..." or the full URL), or None when empty."""
    value = (text or "").strip().lower()
    if not value:
        return None
    for prefix in ("https://ror.org/", "http://ror.org/", "ror.org/"):
        if value.startswith(prefix):
            value = value[len(prefix):]
            break
    return f"https://ror.org/{value}"


def create_organisation(session: Session, actor: Actor, name: str, org_type: str,
                        identifier: str | None = None) -> Organisation:
    _check(actor)
    name = " ".join(name.split())
    errors: dict[str, list[str]] = {}
    ror = normalise_identifier(identifier)
    if ror is not None and not _ROR.match(ror):
        errors["identifier"] = ["Enter the organisation's ROR identifier, like https://ror.org/026zzn846, "
                                "or leave it empty."]
    if not name:
        errors["name"] = ["Enter the organisation's name."]
    elif len(name) > 200:
        errors["name"] = ["The name must be 200 characters or fewer."]
    elif find_organisation(session, name) is not None:
        errors["name"] = [f"An organisation called '{name}' already exists."]
    if org_type not in ORG_TYPES:
        errors["org_type"] = ["Choose the type of organisation."]
    if errors:
        raise ValidationError("The organisation could not be created.", field_errors=errors)
    organisation = Organisation(name=name, org_type=org_type, identifier=ror)
    session.add(organisation)
    session.flush()
    audit.record(session, actor, "organisation.created", "organisation", organisation.id,
                 {"name": name, "org_type": org_type, "identifier": ror})
    return organisation


def assign_user(session: Session, actor: Actor, user: User, organisation: Organisation | None) -> None:
    """Set (or, with ``None``, clear) the organisation a person belongs to; never one's own."""
    _check(actor)
    if isinstance(actor, User):
        check_can_change_organisation(actor, user)
    new_id = organisation.id if organisation is not None else None
    if user.organisation_id == new_id:
        return
    old_id = user.organisation_id
    user.organisation_id = new_id
    session.flush()
    audit.record(session, actor, "user.organisation_changed", "user", user.id,
                 {"from": old_id, "to": new_id, "organisation": organisation.name if organisation else None})


def remove_member(session: Session, actor: Actor, organisation: Organisation, user: User) -> None:
    if user.organisation_id != organisation.id:
        raise Conflict(f"{user.display_name} is not recorded at {organisation.name}.")
    assign_user(session, actor, user, None)
