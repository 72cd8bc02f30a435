"""The published log of incidents and breaches: administrators record them (audited), anyone reads them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.errors import ValidationError
from gateway.models import User
from gateway.permissions import Permission, check_permission
from gateway.trust.models import Incident


def record_incident(session: Session, actor: User, occurred_on: dt.date | None, title: str, what_happened: str,
                    action_taken: str, today: dt.date) -> Incident:
    check_permission(actor, Permission.RECORD_INCIDENTS)
    title, what_happened, action_taken = (" ".join((title or "").split()), (what_happened or "").strip(),
                                          (action_taken or "").strip())
    errors: dict[str, list[str]] = {}
    if occurred_on is None:
        errors["occurred_on"] = ["Enter the date it happened."]
    elif occurred_on > today:
        errors["occurred_on"] = ["The date it happened cannot be in the future."]
    elif occurred_on < dt.date(2000, 1, 1):
        errors["occurred_on"] = ["Enter a date from 2000 onwards."]
    for field, value, limit, message in (("title", title, 200, "Enter a short title."),
                                         ("what_happened", what_happened, 5000, "Say what happened."),
                                         ("action_taken", action_taken, 5000, "Say what was done about it.")):
        if not value:
            errors[field] = [message]
        elif len(value) > limit:
            errors[field] = [f"Keep it to {limit} characters or fewer."]
    if errors:
        raise ValidationError("The incident could not be recorded.", field_errors=errors)
    assert occurred_on is not None
    incident = Incident(occurred_on=occurred_on, title=title, what_happened=what_happened, action_taken=action_taken,
                        recorded_by_id=actor.id)
    session.add(incident)
    session.flush()
    audit.record(session, actor, "incident.recorded", "incident", incident.id,
                 {"occurred_on": occurred_on.isoformat(), "title": title})
    return incident


def published(session: Session) -> list[Incident]:
    return list(session.scalars(select(Incident).order_by(Incident.occurred_on.desc(), Incident.id.desc())))
