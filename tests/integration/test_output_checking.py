"""The checker workflow (issue 14): exceptions bound to file bytes, early return, group votes, notifications,
comments private until the round ends, the code behind a table, and the checker's page (finding 5).

Real services, the real worker pass and the real web app against the test database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.errors import Conflict, PermissionDenied, ValidationError
from gateway.identity import tokens
from gateway.models import AuditEvent
from gateway.outbox import OutboxMessage
from gateway.outputs import release as release_mod
from gateway.outputs import service
from gateway.outputs.models import OutputRequest
from gateway.outputs.workflow import OutputState
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
)
from tests.integration.test_pages import csrf_from
from tests.support import factories as f
from tests.support.forms import hidden_fields
from tests.support.handover import hand_over

JUSTIFICATION = "The South/M cell is a published national figure (ONS table 3), so it adds no new information."


@pytest.fixture
def project_id(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> int:
    return ready_project(session_factory, settings)


def failing_request(factory: sessionmaker[Session], settings: Settings, project_id: int,
                    name: str = "small") -> int:
    """Finding 4: a crosstab with a cell of 3 saved unsuppressed; submitted, and the automatic check says fail."""
    folder = outputs_of(settings, factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, name, suppress=False)
    request_id = new_request(factory, settings, project_id, [f"{name}.csv"])
    act(factory, request_id, "researcher", service.submit, settings)
    work(factory, settings)
    assert get(factory, request_id).files[0].check_status == "fail"
    return request_id


def first_file(factory: sessionmaker[Session], request_id: int) -> int:
    return get(factory, request_id).files[0].id


def on_file(factory: sessionmaker[Session], request_id: int, username: str, command, *args):  # type: ignore[no-untyped-def]
    with unit_of_work(factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        return command(s, f.user(s, username), request, request.files[0], *args)


def events(factory: sessionmaker[Session], request_id: int, action: str) -> list[dict]:  # type: ignore[type-arg]
    with factory() as s:
        return [e.details for e in s.scalars(select(AuditEvent).where(
            AuditEvent.object_type == "output_request", AuditEvent.object_id == str(request_id),
            AuditEvent.action == action).order_by(AuditEvent.seq))]


def emails(factory: sessionmaker[Session]) -> list[dict]:  # type: ignore[type-arg]
    with factory() as s:
        return [m.payload for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")
                                             .order_by(OutboxMessage.id))]


# --- finding 4: the automatic verdict counts at approval --------------------------------------------------------

def test_a_failing_small_csv_is_refused_at_approval_without_an_exception_by_service_api_and_page(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """On main, small.csv whose automatic check said "fail" was released on two approvals, with no reason."""
    request_id = failing_request(session_factory, settings, project_id)
    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    assert get(session_factory, request_id).state == OutputState.REVIEWED
    with pytest.raises(Conflict, match=r"'small\.csv' failed its automatic check and has no exception"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")

    with unit_of_work(session_factory) as s:
        _, bearer = tokens.create_token(s, "test", f.user(s, "checker1"), "approve")
    api = app.test_client().post(f"/api/v1/output-requests/{request_id}/decision", json={"outcome": "approve"},
                                 headers={"Authorization": f"Bearer {bearer}"})
    assert api.status_code == 409
    assert "failed its automatic check and has no exception" in json.dumps(api.get_json())

    page = app.test_client()
    sign_in_session(page, session_factory, "checker2")
    html = page.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert "failed its automatic check and has no exception" in html  # shown before the button is pressed
    answer = page.post(f"/outputs/{request_id}/decide",
                       data={**hidden_fields(html, f"/outputs/{request_id}/decide"), "outcome": "approve"},
                       follow_redirects=True)
    assert "Decision recorded" not in answer.get_data(as_text=True)
    assert "failed its automatic check and has no exception" in answer.get_data(as_text=True)
    assert get(session_factory, request_id).state == OutputState.REVIEWED
    work(session_factory, settings)
    assert not (settings.outputs_dir / "releases").exists() or not any((settings.outputs_dir / "releases").iterdir())
    assert events(session_factory, request_id, "output_request.approved") == []


def test_approval_waits_for_the_automatic_checks(session_factory: sessionmaker[Session], settings: Settings,
                                                 project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)  # the worker has not run the checks
    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    with pytest.raises(Conflict, match="has not been through the automatic checks"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")
    work(session_factory, settings)
    act(session_factory, request_id, "checker1", service.decide, "approve", "")
    assert get(session_factory, request_id).state == OutputState.APPROVED


# --- exceptions ---------------------------------------------------------------------------------------------

def test_an_exception_accepted_by_both_checkers_releases_the_failing_file_with_the_reasons_in_the_manifest(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    from tests.support.package_scan import scan_package

    request_id = failing_request(session_factory, settings, project_id)
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    review_all(session_factory, request_id, "checker1", "approve")
    on_file(session_factory, request_id, "checker1", service.decide_exception,
            "accept", "Published figure: safe.", settings)
    review_all(session_factory, request_id, "checker2", "approve")
    # one acceptance is not enough
    with pytest.raises(Conflict, match="accepted by 1 of the 2 checkers"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")
    # a refusal blocks, whoever else accepted
    on_file(session_factory, request_id, "checker2", service.decide_exception,
            "refuse", "Not shown to be public.", settings)
    with pytest.raises(Conflict, match="refused by"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")
    on_file(session_factory, request_id, "checker2", service.decide_exception,
            "accept", "Checked the ONS table.", settings)
    act(session_factory, request_id, "checker2", service.decide, "approve", "")
    work(session_factory, settings)
    request = get(session_factory, request_id)
    assert request.state == OutputState.RELEASED
    package = release_mod.package_path(request, settings.outputs_dir)
    with zipfile.ZipFile(package) as archive:
        manifest, results = json.loads(archive.read("manifest.json")), json.loads(archive.read("results.json"))
    [entry] = manifest["files"]
    assert entry["verdict"]["automatic"] == "fail"
    [granted] = entry["exceptions"]
    assert granted["justification"] == JUSTIFICATION and granted["sha256"] == entry["sha256"]
    assert {(d["checker"], d["decision"], d["reason"]) for d in granted["decisions"]} == {
        ("checker1", "accept", "Published figure: safe."), ("checker2", "accept", "Checked the ONS table.")}
    [acro] = results["results"].values()
    assert acro["exception"] == JUSTIFICATION
    assert scan_package(package, request) == []  # text only: the unsuppressed file is the output itself
    asked = events(session_factory, request_id, "output_request.exception_requested")
    answered = events(session_factory, request_id, "output_request.exception_decided")
    assert asked[0]["justification"] == JUSTIFICATION
    assert [(e["decision"], e["reason"]) for e in answered] == [
        ("accept", "Published figure: safe."), ("refuse", "Not shown to be public."),
        ("accept", "Checked the ONS table.")]


def test_an_exception_is_bound_to_the_files_bytes(session_factory: sessionmaker[Session], settings: Settings,
                                                  project_id: int) -> None:
    request_id = failing_request(session_factory, settings, project_id)
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    act(session_factory, request_id, "checker1", service.return_early, "Please add a footnote first.")
    # the researcher changes the file (still failing) and sends it again: the exception no longer covers it
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "small", suppress=False,
                      margins=True)
    hand_over(session_factory, settings, request_id, folder, "small.csv")
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    request = get(session_factory, request_id)
    assert request.files[0].version == 2 and request.files[0].check_status == "fail"
    assert service.current_exception(request, request.files[0]) is None
    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    with pytest.raises(Conflict, match="no exception"):
        act(session_factory, request_id, "checker1", service.decide, "approve", "")
    with pytest.raises(Conflict, match="No exception has been asked for"):  # the old one cannot be answered
        on_file(session_factory, request_id, "checker1", service.decide_exception, "accept", "ok", settings)


def test_exception_rules(session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    request_id = failing_request(session_factory, settings, project_id)
    with pytest.raises(PermissionDenied):
        on_file(session_factory, request_id, "dualrole", service.request_exception,  # not the author
                JUSTIFICATION, settings)
    with pytest.raises(ValidationError):
        on_file(session_factory, request_id, "researcher", service.request_exception, "   because   ", settings)
    with pytest.raises(Conflict, match="No exception"):
        on_file(session_factory, request_id, "checker1", service.decide_exception, "accept", "fine", settings)
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    with pytest.raises(ValidationError):
        on_file(session_factory, request_id, "checker1", service.decide_exception, "accept", "  ", settings)
    with pytest.raises(PermissionDenied):  # a member of the project's team cannot answer it
        on_file(session_factory, request_id, "dualrole", service.decide_exception, "accept", "fine", settings)
    with pytest.raises(PermissionDenied):
        on_file(session_factory, request_id, "researcher", service.decide_exception, "accept", "fine", settings)
    on_file(session_factory, request_id, "checker1", service.decide_exception, "refuse", "Not justified.", settings)
    with pytest.raises(Conflict, match="already been answered"):
        on_file(session_factory, request_id, "researcher", service.request_exception,
                JUSTIFICATION + " Really.", settings)
    # blinded: the other checker does not see checker1's answer, nor does the researcher, yet
    with session_factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        exception = service.current_exception(request, request.files[0])
        assert exception is not None
        assert service.visible_exception_decisions(f.user(s, "checker2"), request, exception) == []
        assert service.visible_exception_decisions(f.user(s, "researcher"), request, exception) == []
        assert len(service.visible_exception_decisions(f.user(s, "checker1"), request, exception)) == 1

    # a passing file needs none
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "fine", suppress=True)
    passing = new_request(session_factory, settings, project_id, ["fine.csv"])
    act(session_factory, passing, "researcher", service.submit, settings)
    work(session_factory, settings)
    with pytest.raises(Conflict, match="did not fail"):
        on_file(session_factory, passing, "researcher", service.request_exception, JUSTIFICATION, settings)


# --- early return, group votes, notifications ---------------------------------------------------------------

def test_a_checker_returns_early_and_the_people_concerned_are_emailed(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    with pytest.raises(Conflict, match="awaiting review"):  # pending: nothing to return
        act(session_factory, request_id, "checker1", service.return_early, "Too soon.")
    act(session_factory, request_id, "researcher", service.submit, settings)
    submitted = [m["to"] for m in emails(session_factory) if "submitted for checking" in m["subject"]]
    with session_factory() as s:
        expected = {u.email for u in service.checkers_for(s, s.get(OutputRequest, request_id))}
        assert f.user(s, "dualrole").email not in expected  # on the project's team: never asked to check it
        assert {f.user(s, "checker1").email, f.user(s, "checker2").email} <= expected
    assert sorted(submitted) == sorted(expected)
    review_all(session_factory, request_id, "checker1", "approve")  # one review in: partially reviewed
    with pytest.raises(ValidationError):
        act(session_factory, request_id, "checker2", service.return_early, "   ")
    with pytest.raises(PermissionDenied):
        act(session_factory, request_id, "researcher", service.return_early, "Mine.")
    act(session_factory, request_id, "checker2", service.return_early, "Label the columns before we go on.")
    request = get(session_factory, request_id)
    assert request.state == OutputState.RETURNED
    assert events(session_factory, request_id, "output_request.returned")[0]["early"] is True
    with session_factory() as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        seen = [c.text for c in service.visible_comments(f.user(s, "researcher"), request)]
        assert seen == ["Label the columns before we go on."]
        author_email = f.user(s, "researcher").email
    returned = [m for m in emails(session_factory) if m["to"] == author_email and "returned" in m["subject"]]
    assert len(returned) == 1 and "Label the columns" in returned[0]["body"]
    act(session_factory, request_id, "researcher", service.submit, settings)
    assert get(session_factory, request_id).round == 2
    assert len([m for m in emails(session_factory) if "resubmitted for checking" in m["subject"]]) == len(expected)


def test_request_changes_on_a_whole_group(session_factory: sessionmaker[Session], settings: Settings,
                                         project_id: int) -> None:
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    data = load_extract(settings, session_factory, project_id)
    for name in ("a", "b"):
        notebook_crosstab(data, folder, name, suppress=True)
    (folder / "notes.txt").write_text("How the tables were made.")
    request_id = new_request(session_factory, settings, project_id, ["a.csv", "b.csv", "notes.txt"],
                             kinds={"notes.txt": "supporting"})
    act(session_factory, request_id, "researcher", service.submit, settings)
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        cast = service.vote_group(s, f.user(s, "checker1"), request, request.groups[0], "changes_requested",
                                  "Both tables need a footnote.")
        assert {v.file.path for v in cast} == {"a.csv", "b.csv"}  # outputs only, not supporting notes
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        service.submit_review(s, f.user(s, "checker1"), request)
        assert request.reviews[0].outcome == "changes_requested"
        assert any("Both tables need a footnote" in c.text for c in request.comments)


# --- comments: private to checkers until the round ends -------------------------------------------------------

def test_comments_stay_with_the_checkers_until_the_request_is_returned(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    request_id = failing_request(session_factory, settings, project_id)
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        private = service.add_comment(s, f.user(s, "checker1"), request, "Private: the 3 looks real.", "private")
        service.add_comment(s, f.user(s, "checker1"), request, "Public: please suppress small cells.", "public")
        private_id = private.id

    def seen(username: str) -> list[str]:
        with session_factory() as s:
            request = s.get(OutputRequest, request_id)
            assert request is not None
            return [c.text for c in service.visible_comments(f.user(s, username), request)]

    assert seen("researcher") == [] and seen("dualrole") == []  # nothing yet: the round is open
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        comment = service.get_comment(f.user(s, "checker1"), request, private_id)
        with pytest.raises(PermissionDenied):  # only the checker who wrote it
            service.publish_comment(s, f.user(s, "checker2"), request, comment)
    review_all(session_factory, request_id, "checker1", "changes_requested")
    review_all(session_factory, request_id, "checker2", "changes_requested")
    assert seen("researcher") == []  # reviewed, but not yet returned
    act(session_factory, request_id, "checker2", service.decide, "return", "Suppress the small cell.")
    assert seen("researcher") == ["Public: please suppress small cells.", "Suppress the small cell."]
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        service.publish_comment(s, f.user(s, "checker1"), request,
                                service.get_comment(f.user(s, "checker1"), request, private_id))
    assert seen("researcher")[0] == "Private: the 3 looks real."
    assert events(session_factory, request_id, "output_request.comment_published")[0]["comment"] == private_id
    with pytest.raises(Conflict, match="already public"), unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        service.publish_comment(s, f.user(s, "checker1"), request, request.comments[0])


# --- the checker's page: code, verdict tags, sentences (finding 5) ------------------------------------------------

def test_the_checkers_page_shows_suppressed_cells_integers_sentences_and_the_code(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """On main a suppressed cell wore a green "pass" tag, counts read 253.0 and the summary was a raw dict."""
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    sidecar = folder / "by_region.sdc.json"
    content = json.loads(sidecar.read_text())
    content["source"] = "out = dc.crosstab('region', 'sex', data=df, dataset='patients').suppressed()"
    sidecar.write_text(json.dumps(content))
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    client = app.test_client()
    sign_in_session(client, session_factory, "checker1")
    html = client.get(f"/outputs/{request_id}").get_data(as_text=True)
    cell = re.search(r'<td class="nhsuk-table__cell" data-verdict="([a-z]+)"[^>]*>(\s*)<br>(.*?)</td>', html, re.S)
    assert cell is not None and cell.group(1) == "suppressed"
    assert 'data-testid="verdict">Suppressed<' in cell.group(3) and ">Pass<" not in cell.group(3)
    assert "{'" not in html and "mitigation applied: 1 cell suppressed" in html
    assert not re.search(r">\s*\d+\.0\s*<", html)  # whole counts are integers in the table
    assert "dc.crosstab(&#39;region&#39;, &#39;sex&#39;" in html  # the notebook cell, escaped
    assert "&#34;index&#34;" in html or "&quot;index&quot;" in html or '"index"' in html  # the recorded query
    # the researcher sees neither the code sent from their workspace (it would leave unchecked) nor the verdicts
    sign_in_session(client, session_factory, "researcher")
    mine = client.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert 'data-testid="recorded-query"' not in mine and "data-verdict" not in mine


def test_the_sidecars_text_is_not_shown_to_the_researcher_outside_the_workspace(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """The request page is read outside the workspace: text a researcher put in a sidecar by hand (the cell source,
    the recorded query) must not come back to them there, or it leaves unchecked. The checkers still see it."""
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    sidecar = folder / "by_region.sdc.json"
    content = json.loads(sidecar.read_text())
    content["source"] = "row 1: born 1961-03-04, SW1A 1AA, C34.1"
    content["record"]["query"]["smuggled"] = "row 2: born 1958-11-30, E1 6AN, I21.0"
    sidecar.write_text(json.dumps(content))
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])  # a draft, never submitted
    client = app.test_client()
    sign_in_session(client, session_factory, "researcher")
    mine = client.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert 'data-testid="file-by_region.csv"' in mine
    assert "SW1A 1AA" not in mine and "E1 6AN" not in mine and 'data-testid="cell-source"' not in mine
    act(session_factory, request_id, "researcher", service.submit, settings)
    sign_in_session(client, session_factory, "checker1")
    theirs = client.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert "SW1A 1AA" in theirs and "E1 6AN" in theirs


def test_pages_and_api_for_exceptions_early_return_and_publishing(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    request_id = failing_request(session_factory, settings, project_id)
    file_id = first_file(session_factory, request_id)
    researcher = app.test_client()
    sign_in_session(researcher, session_factory, "researcher")
    html = researcher.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert 'data-testid="no-exception"' in html
    short = researcher.post(f"/outputs/{request_id}/files/{file_id}/exception",
                            data={"csrf_token": csrf_from(html), "justification": "short"}, follow_redirects=True)
    assert "at least 20 characters" in short.get_data(as_text=True)
    researcher.post(f"/outputs/{request_id}/files/{file_id}/exception",
                    data={"csrf_token": csrf_from(html), "justification": JUSTIFICATION})
    with unit_of_work(session_factory) as s:
        _, bearer = tokens.create_token(s, "test", f.user(s, "checker1"), "api")
    api = app.test_client()
    headers = {"Authorization": f"Bearer {bearer}"}
    answer = api.put(f"/api/v1/output-requests/{request_id}/files/{file_id}/exception/decision",
                     json={"decision": "accept", "reason": "Published figure."}, headers=headers)
    assert answer.status_code == 200
    [item] = answer.get_json()["files"]
    assert item["exception"]["justification"] == JUSTIFICATION
    assert [d["checker"] for d in item["exception"]["decisions"]] == ["checker1"]
    bad = api.put(f"/api/v1/output-requests/{request_id}/files/{file_id}/exception/decision",
                  json={"decision": "maybe", "reason": "x"}, headers=headers)
    assert bad.status_code == 422
    assert api.post(f"/api/v1/output-requests/{request_id}/return", json={"comment": ""},
                    headers=headers).status_code == 422
    back = api.post(f"/api/v1/output-requests/{request_id}/return", json={"comment": "Add a footnote."},
                    headers=headers)
    assert back.status_code == 200 and back.get_json()["state"] == "returned"
    again = api.post(f"/api/v1/output-requests/{request_id}/return", json={"comment": "Again."}, headers=headers)
    assert again.status_code == 409
    page = researcher.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert "Add a footnote." in page and "Published figure." in page  # the round ended: reasons are shown


def test_a_justification_or_reason_holding_a_pseudonym_is_refused(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    """The justification and the reasons leave in the manifest: they pass the same pseudonym search as files."""
    request_id = failing_request(session_factory, settings, project_id)
    pseudonym = str(load_extract(settings, session_factory, project_id)["pseudo_id"].iloc[0])
    with pytest.raises(ValidationError, match="pseudonym"):
        on_file(session_factory, request_id, "researcher", service.request_exception,
                f"Only patient {pseudonym.upper()} is in the small cell and they agreed.", settings)
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    with pytest.raises(ValidationError, match="pseudonym"):
        on_file(session_factory, request_id, "checker1", service.decide_exception, "accept",
                f"Fine, it is {pseudonym[:14]}.", settings)
    assert events(session_factory, request_id, "output_request.exception_decided") == []


@pytest.mark.parametrize("where", ["title", "group name", "group context", "group controls"])
def test_a_request_whose_title_or_group_holds_a_pseudonym_cannot_be_submitted(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, where: str) -> None:
    """Attack: the request's title and its groups' name, description and controls leave in the release package's
    manifest.json, but only the files, the justifications and the reasons were searched: a pseudonym read off the
    workspace's screen and typed into a group's description left with the approved files. They are searched
    when the request is submitted, as everything else that leaves is."""
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    pseudonym = str(load_extract(settings, session_factory, project_id)["pseudo_id"].iloc[0])
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, request_id)
        assert request is not None
        group = request.groups[0]
        fields = {"title": request.title, "group name": group.name, "group context": group.context,
                  "group controls": group.controls}
        fields[where] = f"{fields[where]} (see {pseudonym[2:30]})"
        request.title = fields["title"]
        service.save_group(s, f.user(s, "researcher"), request, fields["group name"], fields["group context"],
                           fields["group controls"], group.id)
    with pytest.raises(ValidationError, match="pseudonym"):
        act(session_factory, request_id, "researcher", service.submit, settings)
    assert get(session_factory, request_id).state == OutputState.PENDING


def test_removing_a_file_removes_its_exception(session_factory: sessionmaker[Session], settings: Settings,
                                               project_id: int) -> None:
    request_id = failing_request(session_factory, settings, project_id)
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    on_file(session_factory, request_id, "checker1", service.decide_exception, "accept", "Published.", settings)
    act(session_factory, request_id, "checker1", service.return_early, "Split the table in two.")
    on_file(session_factory, request_id, "researcher", service.remove_file)
    with session_factory() as s:
        from gateway.outputs.models import OutputException, OutputExceptionDecision

        assert s.scalars(select(OutputException)).all() == []
        assert s.scalars(select(OutputExceptionDecision)).all() == []
    assert get(session_factory, request_id).files == []


# --- text from the workspace in the automatic check's notes and in ACRO's results (reached outside) ---------------

MARKER = "smuggledZQXJV"  # stands for anything a researcher might write in a handed-over file to read it outside


def researcher_sees(app: Flask, factory: sessionmaker[Session], request_id: int) -> str:
    """All the author receives about a request outside the workspace: its page and its API answer."""
    client = app.test_client()
    sign_in_session(client, factory, "researcher")
    page = client.get(f"/outputs/{request_id}").get_data(as_text=True)
    with unit_of_work(factory) as s:
        _, bearer = tokens.create_token(s, "test", f.user(s, "researcher"), "api")
    api = client.get(f"/api/v1/output-requests/{request_id}", headers={"Authorization": f"Bearer {bearer}"})
    assert api.status_code == 200
    return page + api.get_data(as_text=True)


def checker_sees(app: Flask, factory: sessionmaker[Session], request_id: int) -> str:
    client = app.test_client()
    sign_in_session(client, factory, "checker1")
    return client.get(f"/outputs/{request_id}").get_data(as_text=True)


def _ols(record: dict) -> None:  # type: ignore[type-arg]
    record["kind"] = "ols"
    record["query"] = {"dataset": "patients", "formula": "imd_decile ~ C(region)", "fit": {"cov_type": MARKER}}


@pytest.mark.parametrize("smuggle", [
    lambda record: record["query"].update(dataset=MARKER),  # "the extract has no dataset ..."
    lambda record: record.update(kind=MARKER),  # "a ... output is not recomputed automatically"
    lambda record: record["query"].update(index=[MARKER]),  # pandas' KeyError, quoted in the reason
    _ols,  # "the fit option cov_type=... is not refitted"
    lambda record: (_ols(record), record["query"].update(fit={MARKER: 1})),  # the option's name
    lambda record: (_ols(record), record["query"].update(fit={}, formula=f"imd_decile ~ {MARKER}")),  # patsy
], ids=["dataset", "kind", "column", "fit-value", "fit-name", "formula"])
def test_why_a_record_was_not_recomputed_carries_no_text_from_the_sidecar_to_the_researcher(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask, smuggle) -> None:  # type: ignore[no-untyped-def]
    """The automatic check's notes are on the author's request page, read outside the workspace: a reason quoting
    the sidecar (a dataset, a column, a fit option, a formula) let any text the researcher wrote there out
    unchecked. The researcher reads that the record was not recomputed and which part of it is at fault; the
    checkers read the value too."""
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=True)
    sidecar = folder / "by_region.sdc.json"
    content = json.loads(sidecar.read_text())
    smuggle(content["record"])
    sidecar.write_text(json.dumps(content))
    request_id = new_request(session_factory, settings, project_id, ["by_region.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    item = get(session_factory, request_id).files[0]
    assert item.check_result["method"] == "heuristic"
    notes = " ".join(item.check_result["notes"])
    assert "Not recomputed" in notes and MARKER not in notes
    assert MARKER in " ".join(item.check_result["checker_notes"])
    assert MARKER not in researcher_sees(app, session_factory, request_id)
    assert 'data-testid="checker-note">Not recomputed' in checker_sees(app, session_factory, request_id)


def test_where_a_table_sits_in_a_json_file_is_not_named_by_its_keys_to_the_researcher(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """A JSON table was named by its path of keys ("In $.<key>, column 1 looks like an identifier"): the keys are
    the researcher's text, and the note is read outside the workspace. It is now "JSON table 1"."""
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    rows = [{"code": number, "n": 3} for number in ("9434765919", "9434765870", "4010232137")]
    (folder / "codes.json").write_text(json.dumps({f"row 1 born 1961-03-04 {MARKER}": rows}))
    request_id = new_request(session_factory, settings, project_id, ["codes.json"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    item = get(session_factory, request_id).files[0]
    notes = " ".join(item.check_result["notes"])
    assert "In JSON table 1, column 1 looks like an identifier" in notes and MARKER not in notes
    assert MARKER not in researcher_sees(app, session_factory, request_id)
    assert MARKER in checker_sees(app, session_factory, request_id)  # the summary names the keys, for the checkers


def test_a_differencing_note_names_the_researchers_cell_by_position_not_by_its_labels(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """A differencing note named the cell by its labels, and a margin's label is the recorded ``margins_name``:
    text from the sidecar, read on the author's page outside the workspace. The note now gives the cell's row and
    column in the file; the checkers read the labels, the earlier output and the counts."""
    released_request(session_factory, settings, project_id, "everyone", margins=True)
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "not_decile_10", suppress=True,
                      filters={"imd_decile": {"between": [1, 9]}}, margins=True, margins_name=MARKER)
    request_id = new_request(session_factory, settings, project_id, ["not_decile_10.csv"])
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    item = get(session_factory, request_id).files[0]
    assert item.check_status == "fail"
    assert any(MARKER in d for d in item.check_result["differencing"])  # the margin's cell is one of those flagged
    notes = " ".join(item.check_result["notes"])
    assert MARKER not in notes and "differ by 4" not in notes and "row 2, column 2" in notes
    assert MARKER not in researcher_sees(app, session_factory, request_id)
    theirs = checker_sees(app, session_factory, request_id)
    assert MARKER in theirs and "differ by 4 people" in theirs


def test_acros_exception_and_comments_from_the_workspace_are_shown_to_the_checkers_only(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """ACRO's results.json is handed over from the workspace: its exception, comments, output names and check names
    are the researcher's text. The author's page, read outside the workspace, said them back; now it says only that
    ACRO asked for an exception or holds comments. The checkers read them all."""
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    (folder / "acro").mkdir()
    (folder / "acro" / "output_0_0.csv").write_text("region,n\nNorth,40\nSouth,30\n")
    entry = {"status": "fail", "type": "table", "properties": {"method": "crosstab"}, "command": "",
             "summary": "", "timestamp": "", "outcome": {},
             "files": [{"name": "output_0_0.csv", "sdc": {"summary": {f"{MARKER}-check": 2}}}],
             "exception": f"exception: row 1 born 1961-03-04 {MARKER}", "comments": [f"comment: SW1A 1AA {MARKER}"]}
    (folder / "acro" / "results.json").write_text(json.dumps({"version": "1.0.2", "results": {f"{MARKER}-uid": entry}}))
    request_id = new_request(session_factory, settings, project_id, ["acro/output_0_0.csv", "acro/results.json"],
                             kinds={"acro/results.json": "supporting"})
    act(session_factory, request_id, "researcher", service.submit, settings)
    work(session_factory, settings)
    mine = researcher_sees(app, session_factory, request_id)
    assert 'data-testid="acro-verdict"' in mine and 'data-testid="acro-exception"' in mine
    assert MARKER not in mine and "1961-03-04" not in mine and "SW1A 1AA" not in mine
    theirs = checker_sees(app, session_factory, request_id)
    assert f"exception: row 1 born 1961-03-04 {MARKER}" in theirs and f"comment: SW1A 1AA {MARKER}" in theirs
    assert f"{MARKER}-check: 2 cells" in theirs and f"output {MARKER}-uid" in theirs
