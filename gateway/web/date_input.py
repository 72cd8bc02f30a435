"""A date typed the NHS way: Day, Month and Year boxes in one fieldset (the ``date_input`` macro draws it).

The boxes are posted as ``<name>-day``, ``<name>-month`` and ``<name>-year``; the field reads them, keeps what
was typed (so a page with a problem shows it again), and parses it through projects/dates.py, whose windows and
messages hold for every date anybody types. ``data`` is a ``datetime.date`` or None. A problem is a field error
naming the field, and only the boxes at fault are marked. The API keeps ISO dates; only pages use this.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from wtforms import Field, Form
from wtforms.utils import unset_value

from projects import dates

HINT = "For example, 15 3 1984"
BOX_LABELS = {"day": "Day", "month": "Month", "year": "Year"}


class NhsDateField(Field):
    """Day, Month and Year boxes (or Month and Year: ``parts=("month", "year")``, the month's first day)."""

    box_labels = BOX_LABELS

    def __init__(self, label: str | None = None, validators: Iterable[Any] | None = None, *,
                 subject: str | None = None, hint: str = HINT, parts: tuple[str, ...] = dates.PARTS,
                 earliest: dt.date = dates.EARLIEST, latest: dt.date = dates.LATEST, **kwargs: Any) -> None:
        super().__init__(label, validators, **kwargs)
        self.subject = subject or str(self.label.text)
        self.hint = hint
        self.parts = parts
        self.earliest, self.latest = earliest, latest
        self.boxes: dict[str, str] = dict.fromkeys(parts, "")
        self.wrong: tuple[str, ...] = ()
        self.problem: str | None = None

    def process(self, formdata: Any, data: Any = unset_value, extra_filters: Any = None) -> None:
        self.process_errors = []
        if data is unset_value:
            data = self.default() if callable(self.default) else self.default
        self.object_data = data
        self.data = data if isinstance(data, dt.date) else None
        self.boxes = {part: (str(getattr(self.data, part)) if self.data else "") for part in self.parts}
        self.wrong, self.problem = (), None
        names = {part: f"{self.name}-{part}" for part in self.parts}
        if formdata is None or not any(name in formdata for name in names.values()):
            return  # not posted: the value given (an edit form's stored date) stands
        # a file posted under a box's name is no typing
        self.raw_data = [value if isinstance(value := formdata.get(name), str) else "" for name in names.values()]
        self.boxes = dict(zip(self.parts, self.raw_data, strict=True))
        typed = dates.parse_parts(self.boxes, self.subject, self.parts, self.earliest, self.latest)
        self.data, self.problem, self.wrong = typed.day, typed.problem, typed.wrong
        if typed.problem:
            self.process_errors.append(typed.problem)

    def marked(self) -> tuple[str, ...]:
        """The boxes drawn as wrong: those the typing got wrong, or all of them for a rule about the whole date
        (in the past, after another date)."""
        if not self.errors:
            return ()
        return self.wrong or self.parts

    @property
    def error_anchor(self) -> str:
        """Where the error summary's link goes: the first box at fault."""
        return f"{self.id}-{(self.marked() or self.parts)[0]}"

    def keep_typing_problem(self) -> None:
        """After a service's refusal is laid over the form: what was wrong with the typing is what to show."""
        if self.problem:
            self.errors = [self.problem]


def only_date_problems(form: Form) -> bool:
    """Every problem the form found is in a date field's typing: the page may still ask the service (which refuses
    a missing date) so that every other problem is shown at once."""
    with_errors = [field for field in form if field.errors]
    return bool(with_errors) and all(isinstance(field, NhsDateField) for field in with_errors)


def keep_typing_problems(form: Form) -> None:
    for field in form:
        if isinstance(field, NhsDateField):
            field.keep_typing_problem()


def month_text(day: dt.date) -> str:
    """A month as the charging service takes it: 2026-11."""
    return f"{day.year:04d}-{day.month:02d}"
