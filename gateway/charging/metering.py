"""Meter readings are events, recorded once and audited.

``record_meter_event`` is the one entry point the other parts call (workspaces, output checking, extracts).
Its ``key`` is unique: replaying a reading (a retried job, a double click) finds the first one and records
nothing new, so usage is never billed twice.

Kinds and units:
  seat_month       month    one researcher's workspace seat for one calendar month (daily job, below)
  output_check     check    one output request checked (the output part records it)
  extract_refresh  dataset  datasets re-provided by an extract refresh (the extracts part records it)
  compute          minute   workspace time, from closed workspace sessions (daily job, below)
  fee              item     one-off charges priced when a quote is frozen, and annual reviews

Seat-month rule: a member is charged a seat for each calendar month in which, on a day the daily job ran,
the project was active and within its access dates and the member held a valid accreditation.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import audit
from gateway.audit import Actor
from gateway.charging.models import METER_KINDS, MeterEvent
from gateway.db import utcnow
from gateway.errors import Conflict, ValidationError
from gateway.models import User
from gateway.workspaces.models import WorkspaceSession
from projects.models import Project

UNITS = {"seat_month": "month", "output_check": "check", "extract_refresh": "dataset", "compute": "minute",
         "fee": "item"}


def period_of(moment: dt.datetime | dt.date) -> str:
    if isinstance(moment, dt.datetime):
        moment = moment.astimezone(dt.UTC).date()
    return f"{moment.year:04d}-{moment.month:02d}"


def record_meter_event(session: Session, project: Project, kind: str, quantity: int, key: str,
                       user: User | None = None, occurred_at: dt.datetime | None = None, *,
                       description: str = "", amount_pence: int | None = None,
                       actor: Actor = "system") -> MeterEvent:
    """Record one reading, once. A replay with the same key returns the stored event and records nothing.

    A replay that disagrees with the stored reading (another project, kind or quantity) is refused: the
    key names one fact.
    """
    return _record(session, project, kind, quantity, key, user, occurred_at, description, amount_pence, actor)[0]


def _record(session: Session, project: Project, kind: str, quantity: int, key: str, user: User | None,
            occurred_at: dt.datetime | None, description: str, amount_pence: int | None,
            actor: Actor) -> tuple[MeterEvent, bool]:
    if kind not in METER_KINDS:
        raise ValidationError(f"Unknown meter kind '{kind}'.", field_errors={"kind": [f"Use one of {METER_KINDS}."]})
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValidationError("A meter reading is a whole number, zero or more.",
                              field_errors={"quantity": ["Enter a whole number, zero or more."]})
    key = key.strip()
    if not key or len(key) > 200:
        raise ValidationError("A meter reading needs a key of 1 to 200 characters.",
                              field_errors={"key": ["Give the reading a unique key."]})
    if (kind == "fee") != (amount_pence is not None):
        raise ValidationError("Fees, and only fees, carry a fixed amount.")
    existing = session.scalar(select(MeterEvent).where(MeterEvent.event_key == key))
    if existing is not None:
        return _same_or_refuse(existing, project, kind, quantity), False
    moment = occurred_at or utcnow()
    event = MeterEvent(event_key=key, project_id=project.id, user_id=user.id if user else None, kind=kind,
                       quantity=quantity, unit=UNITS[kind], period=period_of(moment), occurred_at=moment,
                       recorded_at=utcnow(), description=description[:300], amount_pence=amount_pence)
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:  # recorded concurrently by another transaction: that one stands
        stored = session.scalar(select(MeterEvent).where(MeterEvent.event_key == key))
        if stored is None:
            raise
        return _same_or_refuse(stored, project, kind, quantity), False
    audit.record(session, actor, "meter.recorded", "project", project.id,
                 {"key": key, "kind": kind, "quantity": quantity, "unit": event.unit, "period": event.period,
                  "user": user.username if user else None, "amount_pence": amount_pence})
    from gateway.charging.budget import evaluate_budget

    evaluate_budget(session, project)
    return event, True


def _same_or_refuse(stored: MeterEvent, project: Project, kind: str, quantity: int) -> MeterEvent:
    if (stored.project_id, stored.kind, stored.quantity) != (project.id, kind, quantity):
        raise Conflict(f"Meter reading '{stored.event_key}' was already recorded with different values.")
    return stored


def compute_minutes(started_at: dt.datetime, stopped_at: dt.datetime) -> int:
    """Whole minutes, a part minute counting as one."""
    return max(0, math.ceil((stopped_at - started_at).total_seconds() / 60))


def meter_compute_sessions(session: Session, until: dt.datetime | None = None) -> int:
    """Turn every closed workspace session into one compute reading (minutes); returns how many were new."""
    query = select(WorkspaceSession).where(WorkspaceSession.stopped_at.is_not(None))
    if until is not None:
        query = query.where(WorkspaceSession.stopped_at < until)
    done = set(session.scalars(select(MeterEvent.event_key).where(MeterEvent.kind == "compute")))
    new = 0
    for ws in session.scalars(query.order_by(WorkspaceSession.id)):
        key = f"compute:workspace-session:{ws.id}"
        if key in done:
            continue
        project = session.get(Project, ws.project_id)
        assert project is not None and ws.stopped_at is not None
        _, created = _record(session, project, "compute", compute_minutes(ws.started_at, ws.stopped_at), key,
                             ws.user, ws.stopped_at, f"Workspace {ws.server_name} ({ws.tier})", None, "system")
        new += created
    return new


def meter_seat_months(session: Session, today: dt.date) -> int:
    """Record this month's seat for every member entitled today (idempotent per member and month)."""
    from projects.accreditation_rules import valid_accreditation
    from projects.workflow import ProjectState

    moment = dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC)
    new = 0
    projects = session.scalars(select(Project).where(Project.state == ProjectState.ACTIVE.value,
                                                     Project.start_date <= today, Project.end_date >= today))
    for project in projects:
        for member in project.members:
            if valid_accreditation(session, member.user, today) is None:
                continue
            key = f"seat:{project.id}:{member.user_id}:{period_of(today)}"
            _, created = _record(session, project, "seat_month", 1, key, member.user, moment,
                                 "", None, "system")
            new += created
    return new


def meter_annual_reviews(session: Session, today: dt.date) -> int:
    """Each anniversary of an active project's start (before its end) is an annual review fee."""
    from gateway.charging.pricing import basis_for
    from gateway.charging.quotes import _anniversary
    from projects.workflow import ProjectState

    new = 0
    for project in session.scalars(select(Project).where(Project.state == ProjectState.ACTIVE.value)):
        years = 1
        while (day := _anniversary(project.start_date, years)) <= today:
            if day < project.end_date:
                basis = basis_for(session, project)
                unit = basis.unit(basis.tariff.prices.annual_review)
                _, created = _record(session, project, "fee", 1, f"annual-review:{project.id}:{years}", None,
                                     dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC),
                                     f"Annual review ({day.isoformat()})", unit, "system")
                new += created
            years += 1
    return new
