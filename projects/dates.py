"""The bounds every date a person types must fall within, in one place.

Python's dates run from year 1 to 9999, but arithmetic on the edges fails (9999-12-31 plus a day is year 10000),
and a date no real project could have only ever reaches code as a mistake or an attack. Each kind of date has a
window; a value outside it is a field error with a plain message, never stored, so no page or job that later
computes with it can fail.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

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


def outside(day: dt.date, earliest: dt.date = EARLIEST, latest: dt.date = LATEST, subject: str | None = None
            ) -> str | None:
    """A message when ``day`` is outside [earliest, latest], else None; it names ``subject`` when given."""
    if day < earliest:
        return f"{subject} must be on or after {long(earliest)}." if subject else \
            f"Enter a date on or after {long(earliest)}."
    if day > latest:
        return f"{subject} must be on or before {long(latest)}." if subject else \
            f"Enter a date on or before {long(latest)}."
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


# --- a date typed in separate boxes (the NHS date input pattern: Day, Month, Year) -----------------------------

PARTS = ("day", "month", "year")


@dataclass(frozen=True)
class Typed:
    """What separate Day, Month and Year boxes held: the date, or a message naming the field and the boxes that
    are wrong (only those are marked). Empty boxes are (None, None, nothing wrong): whether a date is required
    is the caller's rule."""

    day: dt.date | None
    problem: str | None = None
    wrong: tuple[str, ...] = ()


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _digits(text: str, most: int) -> int | None:
    """ASCII digits only (int() also takes full-width and other scripts' digits, and signs), at most ``most``."""
    if not text or len(text) > most or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_parts(boxes: Mapping[str, str | None], subject: str, parts: tuple[str, ...] = PARTS,
                earliest: dt.date = EARLIEST, latest: dt.date = LATEST) -> Typed:
    """The date typed in ``parts`` boxes (day, month, year; or month and year, meaning the month's first day),
    checked against [earliest, latest]. ``subject`` names the field at the start of every message, like
    "Date of training must include a month"."""
    typed = {part: (boxes.get(part) or "").strip() for part in parts}
    if not any(typed.values()):
        return Typed(None)
    missing = [part for part in parts if not typed[part]]
    if missing:
        return Typed(None, f"{subject} must include a {_and(missing)}.", tuple(missing))
    year = _digits(typed["year"], 4)
    month = _digits(typed["month"], 2)
    day = _digits(typed["day"], 2) if "day" in parts else 1
    wrong = []
    if day is None or not 1 <= day <= 31:
        wrong.append("day")
    if month is None or not 1 <= month <= 12:
        wrong.append("month")
    short_year = year is not None and len(typed["year"]) < 4
    if year is None or short_year:
        wrong.append("year")
    if wrong:
        if wrong == ["year"] and short_year:
            return Typed(None, f"{subject} must include a year with 4 numbers.", ("year",))
        return Typed(None, f"{subject} must be a real date.", tuple(wrong))
    assert day is not None and month is not None and year is not None
    if year < 1 or day > calendar.monthrange(year, month)[1]:  # 31 2 2027, 31 4 2026, year 0000
        return Typed(None, f"{subject} must be a real date.", ("day",) if year >= 1 else ("year",))
    value = dt.date(year, month, day)
    problem = outside(value, earliest, latest, subject=subject)
    return Typed(None, problem, parts) if problem else Typed(value)
