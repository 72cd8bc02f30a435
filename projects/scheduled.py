"""Jobs the worker runs once a day, each given a session (one transaction) and today's date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy.orm import Session

from projects.accreditation import send_expiry_reminders
from projects.lifecycle import expire_due


def expire_projects(session: Session, on: dt.date) -> None:
    """Projects past their access end date expire (their workspaces are then stopped)."""
    expire_due(session, on)


def charging(session: Session, on: dt.date) -> None:
    """Meter seats, compute and annual reviews; invoice the previous month once (gateway.charging.jobs)."""
    from gateway.charging.jobs import daily_charging

    daily_charging(session, on)


JOBS: list[Callable[[Session, dt.date], None]] = [send_expiry_reminders, expire_projects, charging]
