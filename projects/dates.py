"""The bounds every date a person types must fall within, in one place.

Python's dates run from year 1 to 9999, but arithmetic on the edges fails (9999-12-31 plus a day is year 10000),
and a date no real project could have only ever reaches code as a mistake or an attack. Each kind of date has a
window; a value outside it is a field error with a plain message, never stored, so no page or job that later
computes with it can fail.
"""

from __future__ import annotations

import calendar
import datetime as dt

EARLIEST = dt.date(1900, 1, 1)  # any date about people, data or the log: nothing here is older
LATEST = dt.date(2100, 12, 31)  # ... or later
ACCREDITATION_MAX_YEARS = 10  # an accreditation that claims to last longer is a typing mistake


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later (the month's last day when it is shorter: 31 January + 1 month = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def add_years(day: dt.date, years: int) -> dt.date:
    return add_months(day, 12 * years)


def latest_access_end(today: dt.date, max_term_months: int) -> dt.date:
    """The furthest end date a project's access may be given (at approval or by an extension) on ``today``."""
    return add_months(today, max_term_months)


def latest_accreditation_expiry(today: dt.date) -> dt.date:
    return add_years(today, ACCREDITATION_MAX_YEARS)


def long(day: dt.date) -> str:
    return f"{day.day} {day.strftime('%B %Y')}"


def outside(day: dt.date, earliest: dt.date = EARLIEST, latest: dt.date = LATEST) -> str | None:
    """A message when ``day`` is outside [earliest, latest], else None."""
    if day < earliest:
        return f"Enter a date on or after {long(earliest)}."
    if day > latest:
        return f"Enter a date on or before {long(latest)}."
    return None


def parse(text: str | None) -> tuple[dt.date | None, str | None]:
    """A date typed as YYYY-MM-DD (ASCII digits only), checked against the general window: (date, None) or
    (None, message). Empty text is (None, None)."""
    value = (text or "").strip()
    if not value:
        return None, None
    if len(value) != 10 or not value.isascii() or value[4] != "-" or value[7] != "-":
        return None, "Enter a real date, like 2026-03-14."
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None, "Enter a real date, like 2026-03-14."
    problem = outside(day)
    return (None, problem) if problem else (day, None)
