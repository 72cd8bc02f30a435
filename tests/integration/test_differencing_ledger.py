"""The service-wide differencing ledger: a table is compared with every table released from the same population in
any project, and the researcher learns only that a table released elsewhere conflicts.

Real services, the real worker and the real pages: project A releases a table; project B, another team on an
extract of the same source with the same population parameters, asks for a table that differs by a small group.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.errors import Conflict
from gateway.outputs import ledger, service
from gateway.outputs import release as release_mod
from gateway.outputs.ledger import LedgerEntry
from gateway.outputs.workflow import OutputState
from projects.models import Project
from tests.conftest import sign_in_session
from tests.integration.test_outputs import (
    act,
    get,
    load_extract,
    new_request,
    notebook_crosstab,
    outputs_of,
    ready_project,
    released_request,
    review_all,
    work,
    write_extract,
)
from tests.support import factories as f

POPULATION = {"cohort": {"boroughs": None, "age_min": None, "age_max": None, "conditions": []},
              "date_range": {"start": "2015-01-01", "end": "2024-12-31"}, "apply_opt_out": True}


def with_population(settings: Settings, factory: sessionmaker[Session], project_id: int,
                    parameters: dict[str, Any], source_rows: int = 5000) -> Path:
    """The project's extract, with the manifest fields the extract builder writes about its population."""
    with factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        version = write_extract(settings, project)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["catalogue"] = "londonsde synthetic London population"
    manifest["parameters"] = {**parameters, "datasets": {"patients": ["region", "sex", "imd_decile"]}}
    for table in manifest["tables"]:
        table["source_rows"] = source_rows
    (version / "manifest.json").write_text(json.dumps(manifest))
    return version


def second_project(factory: sessionmaker[Session], applicant: str = "researcher2", title: str = "Second team") -> int:
    with unit_of_work(factory) as s:
        f.accredit(s, applicant)
    return f.approved_project(factory, applicant=applicant, title=title)


def nested_request(settings: Settings, factory: sessionmaker[Session], project_id: int, author: str) -> int:
    """Everyone outside IMD decile 10: 4 fewer North/F patients than the whole extract."""
    folder = outputs_of(settings, factory, author, project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, "not_decile_10", suppress=True,
                      filters={"imd_decile": {"between": [1, 9]}})
    request_id = new_request(factory, settings, project_id, ["not_decile_10.csv"], author=author)
    act(factory, request_id, author, service.submit, settings)
    work(factory, settings)
    return request_id


@pytest.fixture
def project_a(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> int:
    project_id = ready_project(session_factory, settings)
    with_population(settings, session_factory, project_id, POPULATION)
    return project_id


def reference(factory: sessionmaker[Session], project_id: int) -> str:
    with factory() as s:
        project = s.get(Project, project_id)
        assert project is not None
        return project.reference


def test_a_table_released_by_another_project_from_the_same_population_is_flagged_without_showing_it(
        session_factory: sessionmaker[Session], settings: Settings, project_a: int, client: FlaskClient) -> None:
    released = released_request(session_factory, settings, project_a, "everyone")
    assert get(session_factory, released).state == OutputState.RELEASED
    project_b = second_project(session_factory)
    with_population(settings, session_factory, project_b, POPULATION)
    request_id = nested_request(settings, session_factory, project_b, "researcher2")

    item = get(session_factory, request_id).files[0]
    assert item.check_status == "fail"
    flagged = [c for c in item.check_result["cells"] if "differencing" in c["rules"]]
    assert flagged, "the North/F cell (36 against 40 in project A's release) is flagged"
    a_ref = reference(session_factory, project_a)
    # what the researcher reads: which of their own cells, never the other project, its table or the difference
    notes = " ".join(item.check_result["notes"])
    assert "released elsewhere" in notes
    assert a_ref not in notes and "everyone" not in notes and "differ by 4" not in notes
    assert " 40" not in notes and f"request {released}" not in notes
    # what the checkers read: which release, and the cells
    checker_notes = " ".join(item.check_result["checker_notes"])
    assert a_ref in checker_notes and "everyone.csv" in checker_notes and "differ by 4 people" in checker_notes

    sign_in_session(client, session_factory, "researcher2")
    page = client.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert "released elsewhere" in page
    assert a_ref not in page and "everyone.csv" not in page and "differ by 4" not in page
    sign_in_session(client, session_factory, "checker1")
    page = client.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert a_ref in page and "everyone.csv" in page and "differ by 4 people" in page


def test_a_table_of_another_project_that_is_not_released_is_not_compared(
        session_factory: sessionmaker[Session], settings: Settings, project_a: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_a)
    notebook_crosstab(load_extract(settings, session_factory, project_a), folder, "everyone", suppress=True)
    pending = new_request(session_factory, settings, project_a, ["everyone.csv"])
    act(session_factory, pending, "researcher", service.submit, settings)
    work(session_factory, settings)
    review_all(session_factory, pending, "checker1", "approve")  # reviewed, even approved once, but never released
    project_b = second_project(session_factory)
    with_population(settings, session_factory, project_b, POPULATION)
    request_id = nested_request(settings, session_factory, project_b, "researcher2")
    item = get(session_factory, request_id).files[0]
    assert item.check_result["differencing"] == []
    assert item.check_status == "pass"


@pytest.mark.parametrize("change", [
    {"cohort": {**POPULATION["cohort"], "boroughs": ["Camden"]}},
    {"date_range": {"start": "2020-01-01", "end": "2024-12-31"}},
    {"apply_opt_out": False},
    {"source_rows": 5100},  # a new data cut of the source
])
def test_a_different_population_is_not_compared_across_projects(
        session_factory: sessionmaker[Session], settings: Settings, project_a: int, change: dict[str, Any]) -> None:
    released_request(session_factory, settings, project_a, "everyone")
    project_b = second_project(session_factory)
    parameters = {**POPULATION, **{k: v for k, v in change.items() if k != "source_rows"}}
    with_population(settings, session_factory, project_b, parameters, source_rows=change.get("source_rows", 5000))
    request_id = nested_request(settings, session_factory, project_b, "researcher2")
    item = get(session_factory, request_id).files[0]
    assert item.check_result["differencing"] == []


def test_the_ledger_holds_each_checked_version_once_and_keeps_its_evidence_out_of_packages(
        session_factory: sessionmaker[Session], settings: Settings, project_a: int) -> None:
    released = released_request(session_factory, settings, project_a, "everyone")
    with session_factory() as s:
        entries = s.scalars(select(LedgerEntry)).all()
        assert [(e.request_id, e.file_version, e.dataset) for e in entries] == [(released, 1, "patients")]
        assert any(cell.get("count") for cell in entries[0].record["cells"])  # the checker's form
        assert ledger.population_key(None) is None and ledger.population_key(settings.extracts_root) is None
        found = ledger.released_from(s, entries[0].population_key, {"patients"})
        assert [r.request_id for r in found] == [released]
        assert ledger.released_from(s, entries[0].population_key, {"admissions"}) == []
    request = get(session_factory, released)
    with zipfile.ZipFile(release_mod.package_path(request, settings.outputs_dir)) as package:
        text = b"".join(package.read(n) for n in package.namelist()).decode("utf-8", "replace")
    assert "population_key" not in text and "checker_notes" not in text


def test_two_requests_checked_at_the_same_time_cannot_both_be_approved(
        session_factory: sessionmaker[Session], settings: Settings, project_a: int) -> None:
    """A's and B's checks each ran before the other was approved, so neither saw the other: approval looks again."""
    folder = outputs_of(settings, session_factory, "researcher", project_a)
    notebook_crosstab(load_extract(settings, session_factory, project_a), folder, "everyone", suppress=True)
    first = new_request(session_factory, settings, project_a, ["everyone.csv"])
    act(session_factory, first, "researcher", service.submit, settings)
    work(session_factory, settings)
    project_b = second_project(session_factory)
    with_population(settings, session_factory, project_b, POPULATION)
    second = nested_request(settings, session_factory, project_b, "researcher2")
    assert get(session_factory, second).files[0].check_status == "pass"  # A was not released when B was checked
    for request_id in (first, second):
        review_all(session_factory, request_id, "checker1", "approve")
        review_all(session_factory, request_id, "checker2", "approve")
    act(session_factory, first, "checker1", service.decide, "approve", "")
    with pytest.raises(Conflict) as refused:
        act(session_factory, second, "checker2", service.decide, "approve", "")
    message = str(refused.value)
    assert "'not_decile_10.csv' now conflicts with 'everyone.csv'" in message
    assert reference(session_factory, project_a) in message and "Return the request" in message
    assert get(session_factory, second).state == OutputState.REVIEWED
    work(session_factory, settings)  # A is released; B still cannot be approved as it is
    assert get(session_factory, first).state == OutputState.RELEASED
    with pytest.raises(Conflict):
        act(session_factory, second, "checker2", service.decide, "approve", "")
    act(session_factory, second, "checker2", service.decide, "return", "Widen the categories: see the checks.")
    assert get(session_factory, second).state == OutputState.RETURNED


def test_an_approval_is_not_refused_for_tables_released_before_the_checks(
        session_factory: sessionmaker[Session], settings: Settings, project_a: int) -> None:
    released_request(session_factory, settings, project_a, "everyone")
    project_b = second_project(session_factory)
    with_population(settings, session_factory, project_b, POPULATION)
    folder = outputs_of(settings, session_factory, "researcher2", project_b)
    notebook_crosstab(load_extract(settings, session_factory, project_b), folder, "by_region", suppress=True,
                      filters={"imd_decile": {"between": [1, 10]}})  # the same people: no small difference
    request_id = new_request(session_factory, settings, project_b, ["by_region.csv"], author="researcher2")
    act(session_factory, request_id, "researcher2", service.submit, settings)
    work(session_factory, settings)
    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    act(session_factory, request_id, "checker1", service.decide, "approve", "")
    assert get(session_factory, request_id).state == OutputState.APPROVED
