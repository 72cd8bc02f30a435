"""The date, scheme and status rules of accreditation, without a database."""

from __future__ import annotations

import datetime as dt

from projects.accreditation import AccreditationInput, date_problems, scheme_name, status_text
from projects.models import Accreditation

TODAY = dt.date(2026, 6, 15)


def test_good_dates_have_no_problems() -> None:
    assert date_problems(dt.date(2025, 1, 1), dt.date(2028, 1, 1), TODAY) == {}
    assert date_problems(TODAY, TODAY + dt.timedelta(days=1), TODAY) == {}
    assert date_problems(dt.date(2020, 1, 1), TODAY, TODAY) == {}  # expiring today is still current


def test_missing_dates_are_named() -> None:
    problems = date_problems(None, None, TODAY)
    assert set(problems) == {"training_date", "expiry_date"}


def test_training_cannot_be_in_the_future() -> None:
    assert "training_date" in date_problems(TODAY + dt.timedelta(days=1), TODAY + dt.timedelta(days=900), TODAY)


def test_expiry_must_be_after_training_and_not_past() -> None:
    same = date_problems(dt.date(2026, 1, 1), dt.date(2026, 1, 1), TODAY)
    assert same["expiry_date"] == ["The expiry date is in the past: record a current accreditation."]
    before = date_problems(TODAY, TODAY - dt.timedelta(days=1), TODAY)
    assert "in the past" in before["expiry_date"][0]
    reversed_dates = date_problems(TODAY, TODAY, TODAY)
    assert reversed_dates["expiry_date"] == ["The expiry date must be after the training date."]


def _input(scheme: str, other: str = "") -> AccreditationInput:
    return AccreditationInput(scheme=scheme, other_scheme=other, level="full", number="1", training_date=None,
                              expiry_date=None)


def test_scheme_is_one_of_the_list_or_a_named_other() -> None:
    assert scheme_name(_input("UK Data Service Safe Researcher Training")) == (
        "UK Data Service Safe Researcher Training", {})
    assert scheme_name(_input("Other", "  Wellcome   data course ")) == ("Wellcome data course", {})
    assert "other_scheme" in scheme_name(_input("Other", "   "))[1]
    assert "scheme" in scheme_name(_input("Made up scheme"))[1]
    assert "scheme" in scheme_name(_input(""))[1]


def test_status_text_is_derived_from_status_and_date() -> None:
    record = Accreditation(status="verified", expiry_date=dt.date(2026, 7, 1))
    assert status_text(record, TODAY) == "Valid until 1 July 2026"
    assert status_text(record, dt.date(2026, 7, 1)) == "Valid until 1 July 2026"
    assert status_text(record, dt.date(2026, 7, 2)) == "Expired on 1 July 2026"
    assert status_text(Accreditation(status="pending", expiry_date=dt.date(2030, 1, 1)), TODAY) == \
        "Waiting for verification"
    assert status_text(Accreditation(status="rejected", expiry_date=dt.date(2030, 1, 1)), TODAY) == "Rejected"
