"""The daily charging job: meter today's usage, then invoice the previous month (once)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gateway.charging.invoices import previous_month, run_month
from gateway.charging.metering import meter_annual_reviews, meter_compute_sessions, meter_seat_months


def daily_charging(session: Session, on: dt.date) -> None:
    """Seat-months for this month, compute from closed sessions, annual reviews; then last month's invoices.

    Every step is idempotent, so running it hourly (as the worker does) or twice in a day changes nothing.
    """
    meter_seat_months(session, on)
    meter_compute_sessions(session, dt.datetime.combine(on, dt.time(0), tzinfo=dt.UTC))
    meter_annual_reviews(session, on)
    run_month(session, "system", previous_month(on), on)
