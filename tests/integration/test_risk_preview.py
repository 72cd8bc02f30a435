"""Risk before approval: the DAC sees the re-identification risk of an application before voting (a dry run of
the build on the source data, nothing stored), with the changes that bring it down; the applicant applies one
with a click, and the approved project's extract is built with it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from gateway.extracts import preview
from gateway.extracts import service as extracts
from gateway.extracts.models import ExtractVersion
from gateway.models import AuditEvent
from projects import dac
from projects.applications import VariableChoice
from projects.models import Application, Project
from tests.conftest import sign_in_session
from tests.integration.test_pages import csrf_from
from tests.support import factories as f

IDENTIFYING = [VariableChoice("patients", "date_of_birth", "age is the exposure"),
               VariableChoice("patients", "sex", "differs by sex"),
               VariableChoice("patients", "imd_decile", "deprivation"),
               VariableChoice("patients", "area_code", "local variation"),
               VariableChoice("conditions", "condition")]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_committee_sees_the_exact_risk_the_build_will_find_and_nothing_is_stored(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    settings = app.extensions["sde_settings"]
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory, variables=IDENTIFYING)
    f.submit(session_factory, app_id)
    before = _files(settings.instance_dir)
    sign_in_session(client, session_factory, "dac1")
    html = client.get(f"/applications/{app_id}").get_data(as_text=True)
    card = html[html.index('data-testid="risk-preview"'):]
    assert _files(settings.instance_dir) == before, "a preview writes nothing"
    share = re.search(r'data-testid="risk-share">([0-9.]+)%', card)
    patients = re.search(r"Patients in the cohort</dt><dd[^>]*>([0-9,]+)", card)
    assert share and patients, card[:800]
    assert "Unique records" in card and "High risk" in card  # 400 synthetic patients: every detail is rare

    # what the build then finds is what the committee was shown
    f.review_round(session_factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    with unit_of_work(session_factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.decide(s, f.user(s, "dacchair"), application, f.DAC, outcome="approved", conditions="", message="",
                   access_end_date=f.TODAY + dt.timedelta(days=300), today=f.TODAY)
    extracts.run_queued_builds(settings, session_factory)
    with session_factory() as s:
        version = s.scalar(select(ExtractVersion))
        assert version is not None
        manifest = version.manifest
    assert float(share.group(1)) == round(100 * manifest["risk"]["share_below_k"], 1)
    assert int(patients.group(1).replace(",", "")) == manifest["cohort"]["patients_released"]


def test_the_applicant_sees_rounded_figures_and_applies_a_suggestion_with_one_click(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    settings = app.extensions["sde_settings"]
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory, variables=IDENTIFYING, cohort={"cohort_age_min": 18})
    sign_in_session(client, session_factory, "researcher")
    html = client.get(f"/applications/{app_id}").get_data(as_text=True)
    card = html[html.index('data-testid="risk-preview"'):]
    assert "Figures are rounded" in card and "Unique records" not in card
    assert re.search(r"Patients in the cohort</dt><dd[^>]*>(about [0-9,]+|fewer than 10)<", card), card[:600]
    suggestions = re.findall(r'<div class="nhsuk-inset-text" data-testid="risk-suggestion">(.*?)</div>', card, re.S)
    assert suggestions, "a suggestion to bring the risk down"
    first = suggestions[0]
    fields = {k: v for k, v in re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', first)
              if k not in {"drop", "csrf_token"}}
    drops = re.findall(r'name="drop" value="([^"]+)"', first)
    token = csrf_from(html)
    response = client.post(f"/applications/{app_id}/risk/apply",
                           data={"csrf_token": token, **fields, "drop": drops})
    assert response.status_code == 302
    with session_factory() as s:
        application = s.get(Application, app_id)
        assert application is not None
        assert application.generalisation == {k: (int(v) if k == "age_band_years" else v) for k, v in fields.items()
                                              if k != "csrf_token"}
        assert {f"{v.dataset}.{v.variable}" for v in application.variables}.isdisjoint(drops)
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "application.generalisation_applied")).one()
        assert event.actor_label == "researcher" and event.details["dropped"] == sorted(drops)
    after = client.get(f"/applications/{app_id}").get_data(as_text=True)
    assert after[after.index('data-testid="risk-preview"'):].count("risk-suggestion") <= len(suggestions)

    # approved as it now stands, the project's extract is built with the generalisation the applicant applied
    f.submit(session_factory, app_id)
    f.review_round(session_factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    with unit_of_work(session_factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.decide(s, f.user(s, "dacchair"), application, f.DAC, outcome="approved", conditions="", message="",
                   access_end_date=f.TODAY + dt.timedelta(days=300), today=f.TODAY)
    extracts.run_queued_builds(settings, session_factory)
    with session_factory() as s:
        project = s.scalar(select(Project))
        version = s.scalar(select(ExtractVersion))
        assert project is not None and version is not None
        assert project.generalisation == application.generalisation
        assert {k: v for k, v in version.manifest["parameters"]["generalisation"].items()
                if k in project.generalisation} == project.generalisation


def test_an_apply_refuses_what_is_not_a_suggestion_and_what_is_not_the_applicants(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory, variables=IDENTIFYING)
    sign_in_session(client, session_factory, "researcher")
    token = csrf_from(client.get(f"/applications/{app_id}").get_data(as_text=True))
    for data, message in (({"date_of_birth": "exact"}, "not a generalisation the gateway knows"),
                          ({"lsoa": "keep"}, "can only make details coarser"),  # finer than the default
                          ({"date_of_birth": "month"}, "can only make details coarser"),
                          ({"drop": "patients.nhs_number"}, "is not among the chosen variables"),
                          ({"drop": [f"{v.dataset}.{v.variable}" for v in IDENTIFYING]},
                           "At least one variable must remain")):
        response = client.post(f"/applications/{app_id}/risk/apply", data={"csrf_token": token, **data},
                               follow_redirects=True)
        assert response.status_code == 200 and message in response.get_data(as_text=True), message
        with session_factory() as s:
            application = s.get(Application, app_id)
            assert application is not None and application.generalisation is None and len(application.variables) == 5
    sign_in_session(client, session_factory, "researcher2")  # not theirs: like a missing one
    other = client.post(f"/applications/{app_id}/risk/apply", data={"csrf_token": token, "date_of_birth": "year"})
    assert other.status_code in (400, 404)


def test_preview_figures_for_an_application_without_patient_details() -> None:
    assert preview.rounded_count(7) == "fewer than 10" and preview.rounded_count(1234) == "about 1,230"
    assert preview.rounded_share(0.0) == "0%" and preview.rounded_share(0.003) == "less than 1%"
