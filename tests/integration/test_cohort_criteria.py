"""Structured cohort criteria end to end: the application form and API take them, approval carries them to the
project, and the extract holds exactly the patients who match them (checked against the synthetic source)."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.extracts import service
from gateway.extracts.pseudonym import pseudonymise
from gateway.identity import tokens
from gateway.models import AuditEvent
from projects import applications, dac
from projects.applications import VariableChoice
from projects.models import Application, Project
from tests.conftest import sign_in_session
from tests.support import factories as f

END = dt.date.fromisoformat(f.COMPLETE["date_to"])  # ages are taken on the last day of the date range
VARIABLES = [VariableChoice("patients", "sex", "differs by sex"),
             VariableChoice("patients", "borough", "to check the cohort"),
             VariableChoice("patients", "date_of_birth", "age is the exposure"),
             VariableChoice("conditions", "condition")]
# In catalogue order, as they are stored (the most populous boroughs of the small synthetic source)
FIRST = {"cohort_boroughs": ["Brent", "Bromley", "Croydon", "Enfield", "Hillingdon", "Newham", "Redbridge",
                             "Southwark"],
         "cohort_age_min": 18, "cohort_age_max": 70, "cohort_conditions": ["asthma", "hypertension", "diabetes"]}
SECOND = {"cohort_boroughs": [], "cohort_age_min": 60, "cohort_age_max": None, "cohort_conditions": []}
EVERYONE = {"cohort_boroughs": [], "cohort_age_min": None, "cohort_age_max": None, "cohort_conditions": []}


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    return session_factory


# --- the brute-force answer, straight from the source files ------------------------------------------------

def _age(born: dt.date) -> int:
    return END.year - born.year - ((END.month, END.day) < (born.month, born.day))


def _source(source_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    patients = pd.read_parquet(source_dir / "patients.parquet")
    conditions = pd.read_parquet(source_dir / "conditions.parquet")
    return patients, conditions


def _matching(source_dir: Path, criteria: dict[str, Any]) -> set[str]:
    """NHS numbers of the patients who meet every criterion, less national data opt-outs (the factory's
    application says the opt-out applies)."""
    patients, conditions = _source(source_dir)
    wanted = set(criteria["cohort_conditions"])
    diagnosed = {row.nhs_number for row in conditions.itertuples()
                 if (row.condition in wanted or row.snomed_code in wanted)
                 and (pd.isna(row.diagnosis_date) or row.diagnosis_date <= END)}
    low, high = criteria["cohort_age_min"], criteria["cohort_age_max"]
    found = set()
    for row in patients.itertuples():
        if row.national_data_opt_out:
            continue
        if criteria["cohort_boroughs"] and row.borough not in criteria["cohort_boroughs"]:
            continue
        if low is not None and _age(row.date_of_birth) < low:
            continue
        if high is not None and _age(row.date_of_birth) > high:
            continue
        if wanted and row.nhs_number not in diagnosed:
            continue
        found.add(row.nhs_number)
    return found


def _extract(settings: Settings, factory: sessionmaker[Session], project_id: int,
             version: int) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str]]:
    """The version's patients table, its manifest, and each pseudonym's NHS number (via the project key)."""
    with factory() as s:
        project = s.get(Project, project_id)
        row = next(v for v in service.versions(s, project) if v.version == version)
        key = service.key_path(settings, project).read_bytes()
    folder = settings.extracts_root / row.manifest["project_id"] / f"v{version}"
    patients = pq.read_table(folder / "patients.parquet").to_pandas()
    source_numbers = sorted(_source(settings.source_dir)[0]["nhs_number"])
    return patients, row.manifest, dict(zip(pseudonymise(key, source_numbers), source_numbers, strict=True))


def _check_extract(settings: Settings, factory: sessionmaker[Session], project_id: int, version: int,
                   criteria: dict[str, Any]) -> int:
    expected = _matching(settings.source_dir, criteria)
    patients, manifest, nhs_of = _extract(settings, factory, project_id, version)
    released = [nhs_of[p] for p in patients["pseudo_id"]]
    assert sorted(released) == sorted(expected)  # exactly the matching patients, each once
    assert manifest["cohort"]["patients_released"] == len(expected)
    source = _source(settings.source_dir)[0].set_index("nhs_number")
    _, conditions = _source(settings.source_dir)
    for row, nhs in zip(patients.itertuples(), released, strict=True):  # and every row says so itself
        if criteria["cohort_boroughs"]:
            assert row.borough in criteria["cohort_boroughs"]
        assert row.borough == source.loc[nhs, "borough"]
        age = _age(source.loc[nhs, "date_of_birth"])
        assert (criteria["cohort_age_min"] or 0) <= age <= (criteria["cohort_age_max"] or 200)
        assert END.year - (criteria["cohort_age_max"] or 200) - 1 <= row.year_of_birth <= END.year - (
            criteria["cohort_age_min"] or 0)
        if criteria["cohort_conditions"]:
            mine = conditions[conditions["nhs_number"] == nhs]
            assert set(mine["condition"]) & set(criteria["cohort_conditions"])
    assert manifest["parameters"]["cohort"] == {
        "boroughs": criteria["cohort_boroughs"] or None, "age_min": criteria["cohort_age_min"],
        "age_max": criteria["cohort_age_max"], "conditions": criteria["cohort_conditions"]}
    return len(expected)


# --- the extract -----------------------------------------------------------------------------------------

def test_the_extract_holds_only_the_patients_who_match_the_criteria(
        settings: Settings, world: sessionmaker[Session], client: FlaskClient) -> None:
    project_id = f.approved_project(world, cohort=FIRST, variables=VARIABLES)
    with world() as s:
        project = s.get(Project, project_id)
        assert (project.cohort_boroughs, project.cohort_age_min, project.cohort_age_max,
                project.cohort_conditions) == tuple(FIRST.values())
    service.run_queued_builds(settings, world)
    size = _check_extract(settings, world, project_id, 1, FIRST)
    everyone = _matching(settings.source_dir, EVERYONE)
    assert 5 <= size < len(everyone) / 4  # a real cohort, and much smaller than the whole population
    sign_in_session(client, world, "researcher")
    page = html.unescape(client.get(f"/projects/{project_id}/data").get_data(as_text=True))
    assert "Brent, Bromley, Croydon" in page and "18 to 70, on the last day of the date range" in page
    assert "At least one of: Asthma, Hypertension, Diabetes" in page
    assert re.search(rf'data-testid="cohort-size">{size}<', page)
    assert f"{size} in the extract" in page


def test_no_criteria_keeps_everyone_in_the_date_range(settings: Settings, world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world, variables=VARIABLES)
    service.run_queued_builds(settings, world)
    size = _check_extract(settings, world, project_id, 1, EVERYONE)
    patients, _ = _source(settings.source_dir)
    assert size == len(patients) - int(patients["national_data_opt_out"].sum())


def test_an_amendment_changes_the_criteria_and_the_rebuild_follows(
        settings: Settings, world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world, cohort=FIRST, variables=VARIABLES)
    service.run_queued_builds(settings, world)
    with unit_of_work(world) as s:
        researcher = f.user(s, "researcher")
        amendment = applications.start_amendment(s, researcher, s.get(Project, project_id))
        # pre-filled from the project
        assert (amendment.cohort_boroughs, amendment.cohort_age_min, amendment.cohort_age_max,
                amendment.cohort_conditions) == tuple(FIRST.values())
        applications.update_draft(s, researcher, amendment, {"amendment_summary": "Study older Londoners.",
                                                             **SECOND}, f.catalogue())
        amendment_id = amendment.id
    f.submit(world, amendment_id)
    f.review_round(world, amendment_id, {"dac1": "approve"})
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, outcome="approved",
                   conditions="", message="", access_end_date=None, today=f.TODAY)
    with world() as s:
        project = s.get(Project, project_id)
        assert (project.cohort_boroughs, project.cohort_age_min, project.cohort_age_max,
                project.cohort_conditions) == tuple(SECOND.values())
    service.run_queued_builds(settings, world)
    second = _check_extract(settings, world, project_id, 2, SECOND)
    first = _check_extract(settings, world, project_id, 1, FIRST)  # the earlier version is untouched
    assert second != first and second >= 5


# --- refusals: the form and the API ------------------------------------------------------------------------

BAD = [
    ({"cohort_boroughs": ["Hackney", "Atlantis"]}, "cohort_boroughs",
     "Choose boroughs from the list: 'Atlantis' is not a borough in the data catalogue."),
    ({"cohort_age_min": 65, "cohort_age_max": 18}, "cohort_age_max",
     "The maximum age must be the same as or more than the minimum age."),
    ({"cohort_age_min": -3}, "cohort_age_min", "The minimum age must be 0 or more."),
    ({"cohort_conditions": ["gout"]}, "cohort_conditions",
     "Choose conditions from the list: 'gout' is not a condition in the data catalogue."),
]


def _snapshot(factory: sessionmaker[Session], app_id: int) -> tuple[Any, ...]:
    with factory() as s:
        app = s.get(Application, app_id)
        assert app is not None
        events = s.scalar(select(func.count()).select_from(AuditEvent))
        return (events, app.title, app.lay_summary, app.cohort_boroughs, app.cohort_age_min, app.cohort_age_max,
                app.cohort_conditions, app.updated_at)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match
    return match.group(1)


@pytest.mark.parametrize(("bad", "field", "message"), BAD)
def test_the_form_refuses_bad_criteria_keeps_what_was_typed_and_writes_nothing(
        world: sessionmaker[Session], client: FlaskClient, bad: dict[str, Any], field: str, message: str) -> None:
    app_id = f.draft(world, complete=False, cohort={"cohort_boroughs": ["Camden"], "cohort_age_min": 1})
    sign_in_session(client, world, "researcher")
    form_page = client.get(f"/applications/{app_id}/edit").get_data(as_text=True)
    before = _snapshot(world, app_id)
    typed = {"csrf_token": _csrf(form_page), "title": "Asthma and deprivation", "lay_summary": "Typed, not saved.",
             "cohort_boroughs": ["Hackney"], "cohort_age_min": "5", "cohort_age_max": "16",
             "cohort_conditions": ["asthma"]}
    typed.update({k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in bad.items()})
    response = client.post(f"/applications/{app_id}/edit", data=typed)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    summary = page[page.index("There is a problem"):page.index("</ul>", page.index("There is a problem"))]
    assert f'href="#{field}">{message}</a>' in html.unescape(summary)
    assert f'id="{field}-error"' in page  # and next to the field itself
    assert "Typed, not saved." in page  # everything typed comes back
    assert f'value="{typed["cohort_age_min"]}"' in page and f'value="{typed["cohort_age_max"]}"' in page
    for borough in typed["cohort_boroughs"]:  # an unknown one has no box to tick; the message names it
        assert re.search(rf'value="{borough}" checked>', page) or borough == "Atlantis"
    assert re.search(r'value="Hackney" checked>', page)
    assert not re.search(r'value="Camden" checked>', page)
    assert _snapshot(world, app_id) == before


def test_the_form_saves_partial_criteria_and_the_view_shows_them(world: sessionmaker[Session],
                                                                client: FlaskClient) -> None:
    app_id = f.draft(world, complete=False)
    sign_in_session(client, world, "researcher")
    form_page = client.get(f"/applications/{app_id}/edit").get_data(as_text=True)
    assert "Leave this part empty and your extract has everyone registered" in form_page
    assert form_page.count('name="cohort_boroughs"') == 33 and form_page.count('name="cohort_conditions"') == 5
    response = client.post(f"/applications/{app_id}/edit", data={
        "csrf_token": _csrf(form_page), "title": "Asthma and deprivation", "cohort_age_max": " 16 ",
        "cohort_conditions": ["copd", "asthma"]})
    assert response.status_code == 302
    with world() as s:
        app = s.get(Application, app_id)
        assert (app.cohort_boroughs, app.cohort_age_min, app.cohort_age_max, app.cohort_conditions) == (
            [], None, 16, ["asthma", "copd"])
    view = html.unescape(client.get(f"/applications/{app_id}").get_data(as_text=True))
    assert re.search(r'data-testid="cohort-boroughs">Every borough<', view)
    assert re.search(r'data-testid="cohort-age">16 or younger, on the last day of the date range<', view)
    assert "At least one of: Asthma, COPD (chronic obstructive pulmonary disease)" in view
    edit_again = client.get(f"/applications/{app_id}/edit").get_data(as_text=True)
    assert 'value="16"' in edit_again and re.search(r'value="copd" checked>', edit_again)


def _token(factory: sessionmaker[Session], username: str) -> dict[str, str]:
    with unit_of_work(factory) as s:
        _, plain = tokens.create_token(s, "test", f.user(s, username), "cohort test", 1)
    return {"Authorization": f"Bearer {plain}"}


@pytest.mark.parametrize(("bad", "field", "message"), BAD)
def test_the_api_refuses_bad_criteria_with_field_errors_and_writes_nothing(
        world: sessionmaker[Session], client: FlaskClient, bad: dict[str, Any], field: str, message: str) -> None:
    app_id = f.draft(world, complete=False, cohort={"cohort_boroughs": ["Camden"], "cohort_age_min": 1})
    headers = _token(world, "researcher")
    before = _snapshot(world, app_id)
    response = client.patch(f"/api/v1/applications/{app_id}", headers=headers,
                            json={"lay_summary": "Not saved either.", **bad})
    assert response.status_code == 422
    assert response.json["error"] == "validation_error"
    fields = response.json["detail"]["fields"]
    assert list(fields) == [field]
    if field == "cohort_age_min":  # a negative age is refused by the documented schema, in its own words
        assert fields[field] == ["Input should be greater than or equal to 0"]
    else:
        assert fields[field] == [message]
    assert _snapshot(world, app_id) == before


def test_the_api_saves_criteria_clears_them_and_documents_them(world: sessionmaker[Session],
                                                               client: FlaskClient) -> None:
    app_id = f.draft(world, complete=False)
    headers = _token(world, "researcher")
    saved = client.patch(f"/api/v1/applications/{app_id}", headers=headers,
                         json={"cohort_boroughs": ["Newham", "Hackney"], "cohort_age_min": 5})
    assert saved.status_code == 200
    assert (saved.json["cohort_boroughs"], saved.json["cohort_age_min"], saved.json["cohort_age_max"],
            saved.json["cohort_conditions"]) == (["Hackney", "Newham"], 5, None, [])
    # only one end of the range sent: checked against the stored other end
    clash = client.patch(f"/api/v1/applications/{app_id}", headers=headers, json={"cohort_age_max": 4})
    assert clash.status_code == 422 and list(clash.json["detail"]["fields"]) == ["cohort_age_max"]
    cleared = client.patch(f"/api/v1/applications/{app_id}", headers=headers,
                           json={"cohort_boroughs": None, "cohort_age_min": None})
    assert cleared.status_code == 200
    assert (cleared.json["cohort_boroughs"], cleared.json["cohort_age_min"]) == ([], None)
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    patch = schemas["ApplicationPatch"]["properties"]
    assert {"cohort_boroughs", "cohort_age_min", "cohort_age_max", "cohort_conditions"} <= set(patch)
    assert {"cohort_boroughs", "cohort_age_min", "cohort_age_max", "cohort_conditions"} <= set(
        schemas["ApplicationOut"]["properties"])
    assert '"minimum": 0' in str(patch["cohort_age_min"]).replace("'", '"')
