"""The public front door, the public catalogue, public involvement and the published incidents log."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.charging import invoices, metering
from gateway.charging.models import Invoice
from gateway.config import Settings
from gateway.db import unit_of_work, utcnow
from gateway.errors import PermissionDenied, ValidationError
from gateway.extracts.models import ExtractVersion
from gateway.models import AuditEvent
from gateway.trust import incidents
from gateway.trust.models import Incident
from gateway.worker import run_once
from projects.money import format_money
from tests.conftest import sign_in_session
from tests.integration.test_pages import csrf_from
from tests.support import factories as f
from tests.support.date_boxes import boxes


def figure(html: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]*)<', html)
    assert found, testid
    return found.group(1).strip()


def test_signed_out_visitors_get_the_front_door_signed_in_people_their_home(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for text in ("What it is", "What it is not", "Safe people", "Safe projects", "Safe settings", "Safe data",
                 "Safe outputs", "National Data Opt-Out", "opted-out patients are removed from every extract",
                 "nhs.uk/your-nhs-data-matters"):
        assert text in html, text
    for link in ("/register", "/catalogue/", "/charging/tariff", "/involvement", "/incidents", "/login"):
        assert f'href="{link}"' in html, link
    assert figure(html, "figure-projects") == "0" and figure(html, "figure-charges") == "£0.00"
    sign_in_session(client, session_factory, "researcher")
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/home")


def test_live_figures_come_from_the_services(client: FlaskClient, settings: Settings,
                                             session_factory: sessionmaker[Session],
                                             demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
        f.user(s, "researcher").organisation_id = f.organisation(s, "Imperial College London").id
    project_id = f.approved_project(session_factory)
    run_once(settings, session_factory)  # the real worker builds the first extract, applying the opt-out
    now = utcnow()
    next_month = (now.date().replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    with unit_of_work(session_factory) as s:
        (invoice,) = invoices.run_month(s, f.user(s, "finance"), metering.period_of(now), next_month).created
        invoices.issue(s, f.user(s, "finance"), invoice, f.TODAY)
        invoices.record_payment(s, f.user(s, "finance"), invoice, "BACS 1")
        note = invoices.credit_note(s, f.user(s, "finance"), invoice, 500, "Goodwill", f.TODAY)
        collected = invoice.total_pence - note.total_pence
        # an issued but unpaid invoice is not collected
        assert invoice.state == "paid"
    with session_factory() as s:
        removed = sum(v.opt_outs_removed for v in s.scalars(select(ExtractVersion)
                                                             .where(ExtractVersion.project_id == project_id)))
        assert removed > 0  # the synthetic population has opted-out patients; the extract left them out
        assert s.scalar(select(Invoice).where(Invoice.kind == "credit_note")) is not None
    html = client.get("/").get_data(as_text=True)
    assert figure(html, "figure-projects") == "1"
    assert figure(html, "figure-organisations") == "1"
    assert figure(html, "figure-releases") == "0"
    assert figure(html, "figure-charges") == format_money(collected)
    assert figure(html, "figure-opt-outs") == str(removed)
    assert "none at present" in html  # every approved project here applies the opt-out


def test_the_catalogue_is_public_and_metadata_only(client: FlaskClient, demo_users: dict[str, int]) -> None:
    index = client.get("/catalogue/")
    assert index.status_code == 200
    dataset = client.get("/catalogue/patients")
    html = dataset.get_data(as_text=True)
    assert dataset.status_code == 200 and "Sensitivity" in html and "never released" in html
    assert client.get("/catalogue/no-such-dataset").status_code == 404


def test_involvement_names_the_lay_members_and_the_contact(client: FlaskClient, app: object,
                                                           demo_users: dict[str, int]) -> None:
    html = client.get("/involvement").get_data(as_text=True)
    assert "lay member" in html and "has not yet published a contact" in html
    settings = app.extensions["sde_settings"]  # type: ignore[attr-defined]
    settings.public.involvement_contact = "involvement@londonsde.example"
    html = client.get("/involvement").get_data(as_text=True)
    assert "involvement@londonsde.example" in html


def test_administrators_record_incidents_which_are_published_and_audited(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    assert "No incidents have been recorded." in client.get("/incidents").get_data(as_text=True)
    sign_in_session(client, session_factory, "admin")
    token = csrf_from(client.get("/admin/incidents").get_data(as_text=True))
    form = {"csrf_token": token, **boxes("occurred_on", "2026-03-14"), "title": "Output released with a small count",
            "what_happened": "A table with a count of 3 was released.",
            "action_taken": "Package withdrawn; checker guidance updated."}
    for bad, message in ((boxes("occurred_on", ("14", "", "2026")), "The date it happened must include a month."),
                         (boxes("occurred_on", ("14", "3", "26")), "must include a year with 4 numbers"),
                         (boxes("occurred_on", f.TODAY + dt.timedelta(days=1)), "future"),
                         (boxes("occurred_on", ("", "", "")), "Enter the date"), ({"title": " "}, "short title"),
                         ({"action_taken": ""}, "what was done")):
        page = client.post("/admin/incidents", data={**form, **bad})
        assert page.status_code == 422 and message in page.get_data(as_text=True), bad
    done = client.post("/admin/incidents", data=form)
    assert done.status_code == 302 and done.headers["Location"].endswith("/incidents")
    with session_factory() as s:
        incident = s.scalars(select(Incident)).one()
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "incident.recorded")).one()
        assert event.object_id == str(incident.id) and event.actor_label == "admin"
    client.post("/logout", data={"csrf_token": token})
    public = client.get("/incidents").get_data(as_text=True)
    assert "Output released with a small count" in public and "Package withdrawn" in public
    assert "Output released with a small count" in client.get("/").get_data(as_text=True)
    for other in ("researcher", "auditor", "dacchair"):
        with unit_of_work(session_factory) as s, pytest.raises(PermissionDenied):
            incidents.record_incident(s, f.user(s, other), f.TODAY, "t", "w", "a", f.TODAY)
    with unit_of_work(session_factory) as s, pytest.raises(ValidationError):
        incidents.record_incident(s, f.user(s, "admin"), None, "t", "w", "a", f.TODAY)
