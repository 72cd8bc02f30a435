"""Objects people name: an audit event's object, a reference typed in the search box.

Each resolves to a link only through the object's own visibility rule (the one its page applies: the paired
``can_view_*`` functions), so an object somebody may not see is indistinguishable from one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.charging.invoices import can_view_invoice
from gateway.charging.models import Invoice
from gateway.models import User
from gateway.outputs.models import OutputRequest
from gateway.outputs.service import can_view as can_view_output_request
from gateway.permissions import Permission, can_view_accreditation, has_permission
from gateway.web.labels import day, label, moment
from projects.applications import can_view_application
from projects.lifecycle import can_view_project
from projects.models import Accreditation, Application, Organisation, Project


@dataclass(frozen=True)
class Link:
    text: str
    url: str


def _application(session: Session, user: User, a: Application) -> Link | None:
    if not can_view_application(user, a):
        return None
    return Link(f"Application {a.reference}", url_for("applications.view", application_id=a.id))


def _project(session: Session, user: User, p: Project) -> Link | None:
    if not can_view_project(user, p):
        return None
    return Link(f"Project {p.reference}", url_for("projects.view", project_id=p.id))


def _output_request(session: Session, user: User, r: OutputRequest) -> Link | None:
    if not can_view_output_request(user, r):
        return None
    return Link(f"Output request {r.id}", url_for("outputs.view", request_id=r.id))


def _invoice(session: Session, user: User, i: Invoice) -> Link | None:
    project = session.get(Project, i.project_id)
    if project is None or not can_view_invoice(user, i, project):
        return None
    return Link(f"{'Invoice' if not i.is_credit_note else 'Credit note'} {i.number}",
                url_for("charging.invoice", invoice_id=i.id))


def _accreditation(session: Session, user: User, a: Accreditation) -> Link | None:
    if not can_view_accreditation(user, a):
        return None
    return Link(f"Accreditation {a.id}", url_for("accreditation.detail", accreditation_id=a.id))


def _user(session: Session, user: User, u: User) -> Link | None:
    if not has_permission(user, Permission.MANAGE_USERS):
        return None
    return Link(f"User {u.username}", url_for("admin.user", user_id=u.id))


def _organisation(session: Session, user: User, o: Organisation) -> Link | None:
    if not has_permission(user, Permission.MANAGE_ORGANISATIONS):
        return None
    return Link(o.name, url_for("organisations.detail", organisation_id=o.id))


# object type (as in the audit log) -> its model and the link a viewer gets, if they may see it
KINDS: dict[str, tuple[type[Any], Callable[[Session, User, Any], Link | None]]] = {
    "application": (Application, _application),
    "project": (Project, _project),
    "output_request": (OutputRequest, _output_request),
    "invoice": (Invoice, _invoice),
    "accreditation": (Accreditation, _accreditation),
    "user": (User, _user),
    "organisation": (Organisation, _organisation),
}


# kinds whose pages one permission opens, whatever the object
NEEDS: dict[str, Permission] = {"user": Permission.MANAGE_USERS, "organisation": Permission.MANAGE_ORGANISATIONS}


def links_for(session: Session, user: User, objects: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str], Link]:
    """The links a viewer may follow for audit objects (type, id), loaded with one query per type."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for object_type, object_id in objects:
        if object_type in NEEDS and not has_permission(user, NEEDS[object_type]):
            continue  # nothing of this kind can be a link for this viewer: no need to load it
        if object_type in KINDS and object_id is not None and object_id.isdigit():
            wanted[object_type].add(int(object_id))
    found: dict[tuple[str, str], Link] = {}
    for object_type, ids in wanted.items():
        model, link = KINDS[object_type]
        for row in session.scalars(select(model).where(model.id.in_(ids))):
            made = link(session, user, row)
            if made is not None:
                found[(object_type, str(row.id))] = made
    return found


def detail_lines(details: dict[str, Any] | None) -> list[tuple[str, str]]:
    """An audit event's details as (label, value) lines a person can read, nested keys joined with a colon."""
    lines: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                walk(f"{prefix}: {label(key)}" if prefix else label(key), value[key])
            return
        lines.append((prefix, readable(value)))

    walk("", details or {})
    return lines


ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def readable(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value) or "None"
    if isinstance(value, str):
        if ISO_DAY.match(value):
            return day(value)
        if ISO_MOMENT.match(value):
            try:
                return moment(dt.datetime.fromisoformat(value))
            except ValueError:
                return value
        if re.fullmatch(r"[a-z]+(_[a-z]+)+", value):
            return label(value)
        return value
    return str(value)


REFERENCE = re.compile(r"^(?P<prefix>LSDE|AMD|P|INV|CN)-(?P<rest>[0-9-]+)$")
OUTPUT_REQUEST = re.compile(r"^(?:OUTPUT(?: REQUEST)?\s*)?#?\s*(?P<id>\d{1,9})$")


def find_reference(session: Session, user: User, text: str) -> Link | None:
    """The page of the object a reference names, if it exists and this person may see it; otherwise None, the
    same answer for both, so the search box cannot be used to learn what exists."""
    query = " ".join(text.strip().upper().split())
    match = REFERENCE.match(query)
    row: Any = None
    kind = ""
    if match and match["prefix"] in ("LSDE", "AMD"):
        kind, row = "application", session.scalar(select(Application).where(Application.reference == query))
    elif match and match["prefix"] == "P":
        kind, row = "project", session.scalar(select(Project).where(Project.reference == query))
    elif match and match["rest"].isdigit():  # INV-000012 or CN-000013: the number is the id with its kind
        row = session.get(Invoice, int(match["rest"]))
        kind = "invoice" if row is not None and row.number == query else ""
    elif (output := OUTPUT_REQUEST.match(query)) is not None:
        kind, row = "output_request", session.get(OutputRequest, int(output["id"]))
    if row is None or not kind:
        return None
    return KINDS[kind][1](session, user, row)
