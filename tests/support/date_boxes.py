"""Dates as a page's Day, Month and Year boxes post them (gateway/web/date_input.py): ``<name>-day`` and so on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

PARTS = ("day", "month", "year")


def split(value: Any) -> tuple[Any, Any, Any]:
    """(day, month, year) for a date, a (day, month, year) tuple, or text: ISO-like text splits at its last two
    dashes ("-2026-01-01" keeps its sign in the year); any other text goes into every box."""
    if isinstance(value, dt.date):
        return str(value.day), str(value.month), str(value.year)
    if isinstance(value, tuple):
        return value
    if isinstance(value, str) and value.count("-") >= 2 and not value.startswith("--"):
        year, month, day = value.rsplit("-", 2)
        return day, month, year
    return value, value, value


def boxes(name: str, value: Any) -> dict[str, Any]:
    return {f"{name}-{part}": box for part, box in zip(PARTS, split(value), strict=True)}


def as_page(form: Mapping[str, Any], date_fields: Iterable[str]) -> dict[str, Any]:
    """``form`` with each date field's value put in its boxes."""
    fields = set(date_fields)
    posted: dict[str, Any] = {}
    for name, value in form.items():
        posted.update(boxes(name, value) if name in fields else {name: value})
    return posted
