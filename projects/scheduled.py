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


# The domain's daily jobs. The worker runs gateway.wiring.DAILY_JOBS: these, then charging's.
JOBS: list[Callable[[Session, dt.date], None]] = [send_expiry_reminders, expire_projects]
