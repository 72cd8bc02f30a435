"""A date typed in Day, Month and Year boxes (the NHS date input pattern): what each kind of typing gives back."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projects.dates import EARLIEST, LATEST, parse_parts


def typed(day: str | None, month: str | None, year: str | None, subject: str = "Date of training"):
    return parse_parts({"day": day, "month": month, "year": year}, subject)


def test_a_real_date_and_the_boxes_stripped_of_spaces() -> None:
    assert typed("15", "3", "1984").day == dt.date(1984, 3, 15)
    assert typed(" 05 ", "\t03", "2026 ").day == dt.date(2026, 3, 5)
    assert typed("29", "2", "2024").day == dt.date(2024, 2, 29)


def test_empty_boxes_are_no_date_and_no_problem() -> None:
    assert typed("", "", "") == typed(None, None, None) == typed(" ", " ", "\u3000")
    assert typed("", "", "").problem is None and typed("", "", "").day is None


@pytest.mark.parametrize(("boxes", "message", "wrong"), [
    (("14", "", "2026"), "Date of training must include a month.", ("month",)),
    (("", "3", "2026"), "Date of training must include a day.", ("day",)),
    (("14", "3", ""), "Date of training must include a year.", ("year",)),
    (("", "", "2026"), "Date of training must include a day and month.", ("day", "month")),
    (("14", "", ""), "Date of training must include a month and year.", ("month", "year")),
])
def test_a_missing_box_is_named_and_only_it_is_marked(boxes: tuple[str, str, str], message: str,
                                                      wrong: tuple[str, ...]) -> None:
    result = typed(*boxes)
    assert (result.day, result.problem, result.wrong) == (None, message, wrong)


@pytest.mark.parametrize(("boxes", "wrong"), [
    (("31", "2", "2027"), ("day",)),  # no such day in that month
    (("29", "2", "2023"), ("day",)),
    (("31", "4", "2026"), ("day",)),
    (("0", "0", "0"), ("day", "month", "year")),
    (("32", "1", "2026"), ("day",)),
    (("1", "13", "2026"), ("month",)),
    (("-1", "3", "2026"), ("day",)),  # negative numbers
    (("1", "-3", "-2026"), ("month", "year")),
    (("+1", "3", "2026"), ("day",)),
    (("\uff11\uff12", "3", "2026"), ("day",)),  # full-width digits: int() would take them
    (("\u0661", "3", "2026"), ("day",)),  # Arabic-Indic one
    (("1", "3", "\uff12\uff10\uff12\uff16"), ("year",)),
    (("9" * 40, "9" * 40, "9" * 40), ("day", "month", "year")),  # huge numbers
    (("1", "3", "20260"), ("year",)),
    (("1.5", "3", "2026"), ("day",)),
    (("1", "March", "2026"), ("month",)),
    (("1", "3", "0000"), ("year",)),
    (("1 2", "3", "2026"), ("day",)),
])
def test_what_cannot_be_a_date_marks_only_the_wrong_boxes(boxes: tuple[str, str, str], wrong: tuple[str, ...]
                                                          ) -> None:
    result = typed(*boxes, subject="Expiry date")
    assert (result.day, result.problem, result.wrong) == (None, "Expiry date must be a real date.", wrong)


def test_a_two_digit_year_asks_for_four_numbers() -> None:
    for year in ("99", "26", "1"):
        result = typed("1", "3", year)
        assert (result.day, result.problem, result.wrong) == (
            None, "Date of training must include a year with 4 numbers.", ("year",))


def test_the_window_still_holds_and_marks_the_whole_date() -> None:
    early = typed("31", "12", "1899")
    assert early.problem == f"Date of training must be on or after {EARLIEST.day} January 1900." and \
        early.wrong == ("day", "month", "year")
    assert typed("1", "1", "2101").problem == "Date of training must be on or before 31 December 2100."
    assert typed("1", "1", "9999").day is None
    assert typed("1", "1", "1900").day == EARLIEST and typed("31", "12", "2100").day == LATEST
    narrow = parse_parts({"day": "2", "month": "1", "year": "2026"}, "The date it happened",
                         latest=dt.date(2026, 1, 1))
    assert narrow.problem == "The date it happened must be on or before 1 January 2026."


def test_month_and_year_boxes_mean_the_first_of_the_month() -> None:
    parts = ("month", "year")
    assert parse_parts({"month": "11", "year": "2026"}, "The month", parts).day == dt.date(2026, 11, 1)
    assert parse_parts({"month": "11", "year": ""}, "The month", parts).problem == "The month must include a year."
    assert parse_parts({"month": "13", "year": "2026"}, "The month", parts).wrong == ("month",)
    assert parse_parts({"day": "junk", "month": "1", "year": "2026"}, "The month", parts).day == dt.date(2026, 1, 1)


BOX = st.one_of(st.text(max_size=8), st.integers(-100, 10_000).map(str))


@given(BOX, BOX, BOX)
def test_any_typing_gives_a_date_in_the_window_or_a_named_problem(day: str, month: str, year: str) -> None:
    result = typed(day, month, year)
    if result.day is not None:
        assert EARLIEST <= result.day <= LATEST and result.problem is None
        assert result.day == dt.date(int(year), int(month), int(day))
    elif result.problem is not None:
        assert result.problem.startswith("Date of training ") and result.wrong
        assert set(result.wrong) <= {"day", "month", "year"}
    else:
        assert not (day.strip() or month.strip() or year.strip())
