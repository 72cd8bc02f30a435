"""Dates on pages are typed the NHS way: Day, Month and Year boxes in one fieldset, with a legend and a hint.

What a person sees: the stored date in its boxes when editing, what they typed kept when the page has a problem,
a message above the boxes that names the field, and only the wrong boxes marked. The API keeps ISO dates.
"""

from __future__ import annotations

import datetime as dt
import html
import re

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.charging.models import Invoice
from gateway.db import unit_of_work
from gateway.models import AuditEvent
from projects.models import Application, Project
from tests.conftest import sign_in_session
from tests.integration.test_pages import csrf_from
from tests.support import factories as f
from tests.support.date_boxes import boxes
from tests.support.forms import hidden_fields

BOX = r'<input class="nhsuk-input nhsuk-input--width-(\d) nhsuk-date-input__input( nhsuk-input--error)?"\s+' \
      r'id="{name}-{part}" name="{name}-{part}" type="text" inputmode="numeric" value="([^"]*)">'


def box(page: str, name: str, part: str) -> tuple[str, bool]:
    """What a box shows, and whether it is marked wrong."""
    match = re.search(BOX.format(name=name, part=part), page)
    assert match, f"no {part} box for {name}"
    return html.unescape(match.group(3)), bool(match.group(2))


def shown(page: str, name: str) -> dict[str, tuple[str, bool]]:
    return {part: box(page, name, part) for part in ("day", "month", "year")}


def fieldset(page: str, name: str) -> str:
    start = page.index(f'<div class="nhsuk-date-input" id="{name}"')
    return page[page.rindex("<fieldset", 0, start):start]


def test_the_application_form_shows_stored_dates_in_their_boxes_with_a_legend_and_hint(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory)  # data from 1 January 2019 to 31 December 2024
    sign_in_session(client, session_factory, "researcher")
    page = client.get(f"/applications/{app_id}/edit").get_data(as_text=True)
    assert shown(page, "date_from") == {"day": ("1", False), "month": ("1", False), "year": ("2019", False)}
    assert shown(page, "date_to") == {"day": ("31", False), "month": ("12", False), "year": ("2024", False)}
    legend = fieldset(page, "date_from")
    assert 'role="group" aria-describedby="date_from-hint"' in legend
    assert '<legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s">Data from</legend>' in legend
    assert re.search(r'<div class="nhsuk-hint" id="date_from-hint">[^<]*For example, 1 1 2019</div>', legend)
    for part, label in (("day", "Day"), ("month", "Month"), ("year", "Year")):
        assert f'<label class="nhsuk-label nhsuk-date-input__label" for="date_from-{part}">{label}</label>' in page
    assert "YYYY-MM-DD" not in page and 'type="date"' not in page


def test_a_wrong_date_keeps_what_was_typed_marks_only_its_box_and_saves_nothing(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory)
    sign_in_session(client, session_factory, "researcher")
    token = csrf_from(client.get(f"/applications/{app_id}/edit").get_data(as_text=True))
    response = client.post(f"/applications/{app_id}/edit", data={
        "csrf_token": token, "title": "Typed, not saved", **boxes("date_from", (" 31 ", "2", "2027")),
        **boxes("date_to", ("14", "", "2025"))})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert shown(page, "date_from") == {"day": (" 31 ", True), "month": ("2", False), "year": ("2027", False)}
    assert shown(page, "date_to") == {"day": ("14", False), "month": ("", True), "year": ("2025", False)}
    for name, message in (("date_from", "The start of the data period must be a real date."),
                          ("date_to", "The end of the data period must include a month.")):
        # the message is above the boxes, inside the fieldset, and read with them
        assert f'<span class="nhsuk-error-message" id="{name}-error"><span class="nhsuk-u-visually-hidden">' \
               f'Error:</span> {message}</span>' in fieldset(page, name)
        assert f'aria-describedby="{name}-hint {name}-error"' in fieldset(page, name)
    summary = page[page.index("There is a problem"):]
    assert 'href="#date_from-day">The start of the data period must be a real date.' in summary
    assert 'href="#date_to-month">The end of the data period must include a month.' in summary
    assert 'value="Typed, not saved"' in page
    with session_factory() as s:
        application = s.get(Application, app_id)
        assert application is not None
        assert (application.title, application.date_from, application.date_to) == (
            "Asthma and deprivation", dt.date(2019, 1, 1), dt.date(2024, 12, 31))


def test_dates_typed_in_boxes_are_saved_spaces_and_leading_zeros_allowed(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory)
    sign_in_session(client, session_factory, "researcher")
    token = csrf_from(client.get(f"/applications/{app_id}/edit").get_data(as_text=True))
    response = client.post(f"/applications/{app_id}/edit", data={
        "csrf_token": token, "title": "Asthma and deprivation", **boxes("date_from", (" 05", "04 ", " 2018 ")),
        **boxes("date_to", ("", "", ""))})
    assert response.status_code == 302
    with session_factory() as s:
        application = s.get(Application, app_id)
        assert application is not None
        assert (application.date_from, application.date_to) == (dt.date(2018, 4, 5), None)


def test_an_audit_filter_in_boxes_narrows_the_events_and_a_wrong_one_is_named(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "auditor")
    today = dt.datetime.now(dt.UTC).date()
    with session_factory() as s:
        events = len(s.scalars(select(AuditEvent.seq)).all())
    page = client.get("/audit/", query_string={**boxes("since", today), **boxes("until", today)})
    assert page.status_code == 200 and page.get_data(as_text=True).count('data-testid="audit-object"') == \
        min(events, 100)
    later = client.get("/audit/", query_string=boxes("since", today + dt.timedelta(days=1))).get_data(as_text=True)
    assert "No events match." in later
    # the page's links keep the boxes (the CSV link, the next page)
    assert f"since-day={(today + dt.timedelta(days=1)).day}" in html.unescape(later)
    wrong = client.get("/audit/", query_string=boxes("until", ("1", "13", "2026")))
    text = wrong.get_data(as_text=True)
    assert wrong.status_code == 422 and "The to date must be a real date." in text
    assert shown(text, "until") == {"day": ("1", False), "month": ("13", True), "year": ("2026", False)}


def test_finance_chooses_the_invoice_month_in_month_and_year_boxes(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "finance")
    page = client.get("/charging/").get_data(as_text=True)
    last = (dt.date.today().replace(day=1) - dt.timedelta(days=1))
    assert box(page, "month", "month") == (str(last.month), False) and box(page, "month", "year") == (
        str(last.year), False)
    assert 'id="month-day"' not in page and "For example, 11 2026" in page
    token = csrf_from(page)
    response = client.post("/charging/invoices/run", data={"csrf_token": token, "month-month": "13",
                                                           "month-year": str(last.year)})
    text = response.get_data(as_text=True)
    assert response.status_code == 422 and "The month to invoice must be a real date." in text
    assert box(text, "month", "month") == ("13", True) and box(text, "month", "year") == (str(last.year), False)
    this_month = dt.date.today()
    unfinished = client.post("/charging/invoices/run", data={"csrf_token": token, **{
        k: v for k, v in boxes("month", this_month).items() if not k.endswith("-day")}})
    assert unfinished.status_code == 422 and "Choose a month that has ended." in unfinished.get_data(as_text=True)
    done = client.post("/charging/invoices/run", data={"csrf_token": token, "month-month": str(last.month),
                                                       "month-year": str(last.year)})
    assert done.status_code == 302 and done.headers["Location"].endswith(f"period={last:%Y-%m}")
    with session_factory() as s:
        assert s.scalars(select(Invoice)).all() == []  # nobody used anything: nothing to invoice


def test_an_amendment_decision_has_no_end_date_boxes_and_ignores_any_posted(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    project_id, amendment_id = f.amendment(session_factory, "Add a year of data.")
    with session_factory() as s:
        end = s.get(Project, project_id).end_date  # type: ignore[union-attr]
    f.submit(session_factory, amendment_id)
    f.review_round(session_factory, amendment_id, {"dac1": "approve"})
    sign_in_session(client, session_factory, "dacchair")
    page = client.get(f"/applications/{amendment_id}").get_data(as_text=True)
    assert 'data-testid="decision-form"' in page and "access_end_date-day" not in page
    response = client.post(f"/applications/{amendment_id}/decision", data={
        **hidden_fields(page, f"/applications/{amendment_id}/decision"), "outcome": "approved",
        **boxes("access_end_date", ("31", "2", "99999"))})
    assert response.status_code == 302
    with session_factory() as s:
        application, project = s.get(Application, amendment_id), s.get(Project, project_id)
        assert application is not None and project is not None
        assert application.state == "approved" and project.end_date == end  # the posted boxes were not read


def test_a_refused_decision_shows_again_with_what_the_chair_typed(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """No quorum yet (a conflict) or no outcome chosen (a field): the page answers again with the conditions,
    the message and the date as typed, and nothing is decided."""
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory)
    f.submit(session_factory, app_id)
    f.review_round(session_factory, app_id, {"dac1": "approve", "dac2": "approve"})  # no lay vote: no quorum
    sign_in_session(client, session_factory, "dacchair")
    typed = {"conditions": "Publish only counts of 10 or more.", "message": "Thank you for a clear application."}
    end = f.TODAY + dt.timedelta(days=200)
    for outcome, status, said in (("approved", 409, "No quorum yet"), ("", 422, "Choose a decision")):
        form = hidden_fields(client.get(f"/applications/{app_id}").get_data(as_text=True),
                             f"/applications/{app_id}/decision")
        response = client.post(f"/applications/{app_id}/decision", data={
            **form, "outcome": outcome, **typed, **boxes("access_end_date", end)})
        page = html.unescape(response.get_data(as_text=True))
        assert response.status_code == status and said in page, outcome
        assert typed["conditions"] in page and typed["message"] in page, outcome
        assert shown(page, "access_end_date")["year"] == (str(end.year), False), outcome
    with session_factory() as s:
        assert s.get(Application, app_id).state == "under_review"  # type: ignore[union-attr]
