"""Publications from a project, linked by DOI by its members and shown on the public register."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.errors import PermissionDenied, ValidationError
from gateway.models import User
from projects.lifecycle import is_member
from projects.models import Project, Publication

# A DOI: "10." then a registrant code of digits (dots allowed), "/", then a suffix of visible characters.
_DOI = re.compile(r"^10\.\d{4,9}(?:\.\d+)*/[!-~]+$")
_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi:")


def normalise_doi(text: str) -> str | None:
    """The DOI in canonical form (lower case, no resolver prefix), or None when it is not a DOI."""
    value = text.strip()
    for prefix in _PREFIXES:
        if value.lower().startswith(prefix):
            value = value[len(prefix):]
            break
    value = value.lower()
    return value if len(value) <= 200 and _DOI.match(value) else None


def can_link_publication(user: User, project: Project) -> bool:
    return is_member(user, project)


def check_can_link_publication(user: User, project: Project) -> None:
    if not can_link_publication(user, project):
        raise PermissionDenied("Only members of the project can link its publications.")


def link_publication(session: Session, actor: User, project: Project, doi: str, title: str) -> Publication:
    check_can_link_publication(actor, project)
    errors: dict[str, list[str]] = {}
    canonical = normalise_doi(doi or "")
    title = " ".join((title or "").split())
    if canonical is None:
        errors["doi"] = ["Enter a DOI, like 10.1136/bmj.n1234 or https://doi.org/10.1136/bmj.n1234."]
    elif session.scalar(select(Publication).where(Publication.project_id == project.id,
                                                  Publication.doi == canonical)) is not None:
        errors["doi"] = [f"doi:{canonical} is already linked to this project."]
    if not title:
        errors["title"] = ["Enter the publication's title."]
    elif len(title) > 500:
        errors["title"] = ["The title must be 500 characters or fewer."]
    if errors:
        raise ValidationError("The publication could not be linked.", field_errors=errors)
    assert canonical is not None
    publication = Publication(project_id=project.id, doi=canonical, title=title, added_by_id=actor.id)
    session.add(publication)
    session.flush()
    audit.record(session, actor, "publication.linked", "project", project.id, {"doi": canonical, "title": title})
    return publication


def publications_of(session: Session, project: Project) -> list[Publication]:
    return list(session.scalars(select(Publication).where(Publication.project_id == project.id)
                                .order_by(Publication.added_at, Publication.id)))
