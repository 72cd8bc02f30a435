"""A form from an earlier round does not act on a later one.

An output request, or an application, goes round: reviewed, returned to its author, resubmitted (round 2), reviewed
again. A checker's or a committee member's page opened in round 1 and left in a tab still holds its forms; posted
after the resubmission, each decided round 2, which its sender never saw: a return or a rejection written about
round 1, a vote cast on a file's new bytes, a review submitted on votes carried over, an exception accepted in words
the checker never read. Each form now posts the round it was rendered for, and a mismatch is refused under the row's
lock with nothing recorded; the API takes the same round, optionally, and answers 409.

Real services, the real worker pass and the real web app against the test database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.identity import tokens
from gateway.models import AuditEvent
from gateway.outputs import service
from gateway.outputs.workflow import OutputState
from projects import dac
from projects.models import Application
from projects.workflow import AppState
from tests.conftest import sign_in_session
from tests.integration.test_output_checking import JUSTIFICATION, events, failing_request, on_file
from tests.integration.test_outputs import (
    act,
    get,
    load_extract,
    notebook_crosstab,
    outputs_of,
    ready_project,
    review_all,
    submitted,
    work,
)
from tests.support import factories as f
from tests.support.forms import hidden_fields
from tests.support.handover import hand_over


@pytest.fixture
def project_id(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> int:
    return ready_project(session_factory, settings)


def resubmitted(factory: sessionmaker[Session], settings: Settings, request_id: int) -> None:
    act(factory, request_id, "researcher", service.submit, settings)
    work(factory, settings)
    assert get(factory, request_id).round == 2


def tab(app: Flask, factory: sessionmaker[Session], username: str, url: str) -> tuple[FlaskClient, str]:
    """A signed-in browser with the page at ``url`` open."""
    browser = app.test_client()
    sign_in_session(browser, factory, username)
    return browser, browser.get(url).get_data(as_text=True)


def refused(answer: str) -> None:
    """What the checker reads after posting a round-1 form in round 2."""
    assert "resubmitted since you opened it" in answer and "read round 2" in answer, answer


def bearer(factory: sessionmaker[Session], username: str) -> dict[str, str]:
    with unit_of_work(factory) as s:
        _, secret = tokens.create_token(s, "test", f.user(s, username), "stale forms")
    return {"Authorization": f"Bearer {secret}"}


def audit_actions(factory: sessionmaker[Session], object_type: str, object_id: int) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent.action).where(
            AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id)).order_by(AuditEvent.seq)))


# --- output requests: the checkers' forms ----------------------------------------------------------------------

def test_a_decision_form_from_round_1_does_not_return_or_reject_round_2(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """The reviewer's finding: a rejection written about round 1 rejected round 2, reviewed by both and approved."""
    request_id = submitted(session_factory, settings, project_id)
    review_all(session_factory, request_id, "checker1", "changes_requested")
    review_all(session_factory, request_id, "checker2", "changes_requested")
    page, html = tab(app, session_factory, "checker1", f"/outputs/{request_id}")  # round 1, awaiting a decision
    stale = hidden_fields(html, f"/outputs/{request_id}/decide")
    act(session_factory, request_id, "checker2", service.decide, "return", "Describe the population.")
    resubmitted(session_factory, settings, request_id)
    review_all(session_factory, request_id, "checker1", "approve")
    review_all(session_factory, request_id, "checker2", "approve")
    before = audit_actions(session_factory, "output_request", request_id)

    answer = page.post(f"/outputs/{request_id}/decide",
                       data={**stale, "outcome": "reject", "comment": "The population is still not described."},
                       follow_redirects=True)
    refused(answer.get_data(as_text=True))
    request = get(session_factory, request_id)
    assert (request.round, request.state, request.decided_by_id) == (2, OutputState.REVIEWED, None)
    assert [c.text for c in request.comments] == ["Describe the population."]  # the stale comment was not kept
    assert audit_actions(session_factory, "output_request", request_id) == before

    # the page as it is now decides round 2
    fresh = page.get(f"/outputs/{request_id}").get_data(as_text=True)
    assert hidden_fields(fresh, f"/outputs/{request_id}/decide")["round"] == "2"
    page.post(f"/outputs/{request_id}/decide",
              data={**hidden_fields(fresh, f"/outputs/{request_id}/decide"), "outcome": "approve"})
    assert get(session_factory, request_id).state == OutputState.APPROVED


def test_a_vote_form_from_round_1_does_not_approve_the_files_new_version(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """The researcher replaced the table with one that fails its check (a cell of 3): an approval from a round-1 tab
    landed on bytes the checker never saw; so did a whole group's vote."""
    request_id = submitted(session_factory, settings, project_id)
    file_id = get(session_factory, request_id).files[0].id
    group_id = get(session_factory, request_id).groups[0].id
    page, html = tab(app, session_factory, "checker1", f"/outputs/{request_id}")  # round 1, not yet voted
    stale_vote = hidden_fields(html, f"/outputs/{request_id}/files/{file_id}/vote")
    stale_group = hidden_fields(html, f"/outputs/{request_id}/groups/{group_id}/vote")
    act(session_factory, request_id, "checker2", service.return_early, "Show the small cells as they are.")
    folder = outputs_of(settings, session_factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, session_factory, project_id), folder, "by_region", suppress=False)
    hand_over(session_factory, settings, request_id, folder, "by_region.csv")  # version 2
    resubmitted(session_factory, settings, request_id)
    assert get(session_factory, request_id).files[0].version == 2

    refused(page.post(f"/outputs/{request_id}/files/{file_id}/vote", data={**stale_vote, "vote": "approve"},
                      follow_redirects=True).get_data(as_text=True))
    refused(page.post(f"/outputs/{request_id}/groups/{group_id}/vote",
                      data={**stale_group, "vote": "changes_requested", "comment": "Footnote."},
                      follow_redirects=True).get_data(as_text=True))
    request = get(session_factory, request_id)
    assert service.current_votes(request.files[0]) == []
    assert [c.text for c in request.comments] == ["Show the small cells as they are."]
    assert events(session_factory, request_id, "output_request.vote") == []


def test_a_review_submitted_from_a_round_1_tab_does_not_review_round_2(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """The file is unchanged, so the checker's round-1 votes still stand on it: a round-1 tab's "Submit my review"
    became a round-2 review, from a checker who had not looked at round 2."""
    request_id = submitted(session_factory, settings, project_id)
    page, html = tab(app, session_factory, "checker1", f"/outputs/{request_id}")
    stale = hidden_fields(html, f"/outputs/{request_id}/review")
    review_all(session_factory, request_id, "checker1", "approve")  # in another tab
    review_all(session_factory, request_id, "checker2", "approve")
    act(session_factory, request_id, "checker2", service.decide, "return", "Describe the controls more fully.")
    resubmitted(session_factory, settings, request_id)

    refused(page.post(f"/outputs/{request_id}/review", data=stale, follow_redirects=True).get_data(as_text=True))
    request = get(session_factory, request_id)
    assert (request.state, service.round_reviews(request)) == (OutputState.SUBMITTED, [])


def test_a_return_early_form_from_round_1_does_not_return_round_2(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    request_id = submitted(session_factory, settings, project_id)
    page, html = tab(app, session_factory, "checker1", f"/outputs/{request_id}")
    stale = hidden_fields(html, f"/outputs/{request_id}/return-early")
    act(session_factory, request_id, "checker2", service.return_early, "Label the columns.")
    resubmitted(session_factory, settings, request_id)

    refused(page.post(f"/outputs/{request_id}/return-early", data={**stale, "comment": "Label the rows too."},
                      follow_redirects=True).get_data(as_text=True))
    request = get(session_factory, request_id)
    assert request.state == OutputState.SUBMITTED
    assert len(events(session_factory, request_id, "output_request.returned")) == 1


def test_a_comment_form_from_round_1_is_not_filed_under_round_2(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """A checker's comment written about round 1's files, sent after the request came back as round 2, would be
    filed as a comment on round 2 (and, public, shown to the researcher as about files it never saw)."""
    request_id = submitted(session_factory, settings, project_id)
    page, html = tab(app, session_factory, "checker1", f"/outputs/{request_id}")
    stale = hidden_fields(html, f"/outputs/{request_id}/comments")
    act(session_factory, request_id, "checker2", service.return_early, "Label the columns.")
    resubmitted(session_factory, settings, request_id)

    refused(page.post(f"/outputs/{request_id}/comments",
                      data={**stale, "text": "Row 3 is too small.", "visibility": "public"},
                      follow_redirects=True).get_data(as_text=True))
    assert [c.text for c in get(session_factory, request_id).comments] == ["Label the columns."]
    fresh = page.get(f"/outputs/{request_id}").get_data(as_text=True)
    page.post(f"/outputs/{request_id}/comments", data={**hidden_fields(fresh, f"/outputs/{request_id}/comments"),
                                                       "text": "Row 3 is fine now.", "visibility": "public"})
    assert [(c.text, c.round) for c in get(session_factory, request_id).comments][-1] == ("Row 3 is fine now.", 2)


def test_an_exception_answer_from_round_1_does_not_accept_the_reworded_exception(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """Nobody had answered the exception, so the researcher could reword it while the request was returned: a round-1
    tab's "accept" accepted words its checker never read."""
    request_id = failing_request(session_factory, settings, project_id)
    file_id = get(session_factory, request_id).files[0].id
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    page, html = tab(app, session_factory, "checker1", f"/outputs/{request_id}")
    stale = hidden_fields(html, f"/outputs/{request_id}/files/{file_id}/exception/decision")
    act(session_factory, request_id, "checker2", service.return_early, "Say where the figure is published.")
    on_file(session_factory, request_id, "researcher", service.request_exception,
            "Every cell of this table is safe to release, whatever its size.", settings)
    resubmitted(session_factory, settings, request_id)

    refused(page.post(f"/outputs/{request_id}/files/{file_id}/exception/decision",
                      data={**stale, "decision": "accept", "reason": "A published national figure."},
                      follow_redirects=True).get_data(as_text=True))
    request = get(session_factory, request_id)
    exception = service.current_exception(request, request.files[0])
    assert exception is not None and exception.decisions == []
    assert events(session_factory, request_id, "output_request.exception_decided") == []


def test_the_api_takes_the_round_read_and_answers_409_for_an_earlier_one(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    request_id = submitted(session_factory, settings, project_id)
    file_id = get(session_factory, request_id).files[0].id
    act(session_factory, request_id, "checker2", service.return_early, "Label the columns.")
    resubmitted(session_factory, settings, request_id)
    api, headers = app.test_client(), bearer(session_factory, "checker1")
    base = f"/api/v1/output-requests/{request_id}"

    for method, url, body in [("PUT", f"{base}/files/{file_id}/vote", {"vote": "approve", "round": 1}),
                              ("POST", f"{base}/return", {"comment": "Again.", "round": 1})]:
        answer = api.open(url, method=method, json=body, headers=headers)
        assert answer.status_code == 409 and answer.get_json()["error"] == "conflict", answer.get_json()
        refused(answer.get_json()["detail"])
    assert api.put(f"{base}/files/{file_id}/vote", json={"vote": "approve", "round": 2},
                   headers=headers).status_code == 204
    stale_review = api.post(f"{base}/reviews?round=1", headers=headers)
    assert stale_review.status_code == 409, stale_review.get_json()
    assert api.post(f"{base}/reviews?round=2", headers=headers).get_json()["state"] == "partially_reviewed"
    review_all(session_factory, request_id, "checker2", "approve")
    stale_decision = api.post(f"{base}/decision", json={"outcome": "reject", "comment": "No.", "round": 1},
                              headers=headers)
    assert stale_decision.status_code == 409
    assert get(session_factory, request_id).state == OutputState.REVIEWED
    assert api.post(f"{base}/decision", json={"outcome": "approve"}, headers=headers).status_code == 200  # optional
    assert get(session_factory, request_id).state == OutputState.APPROVED


# --- applications: the committee's forms -------------------------------------------------------------------

@pytest.fixture
def applicant(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")


def changes_requested(factory: sessionmaker[Session], app_id: int) -> None:
    with unit_of_work(factory) as s:
        application = s.get(Application, app_id)
        assert application is not None
        dac.decide(s, f.user(s, "dacchair"), application, f.DAC, outcome="changes_requested", conditions="",
                   message="Say how opted-out patients are removed.", access_end_date=None, today=f.TODAY)


def application(factory: sessionmaker[Session], app_id: int) -> Application:
    with factory() as s:
        found = s.get(Application, app_id)
        assert found is not None
        _ = [a.reviews for a in found.assignments], found.decisions
        return found


def test_a_chairs_decision_form_from_round_1_does_not_decide_round_2(
        session_factory: sessionmaker[Session], applicant: None, app: Flask) -> None:
    app_id = f.awaiting_decision(session_factory)
    page, html = tab(app, session_factory, "dacchair", f"/applications/{app_id}")  # round 1, quorate
    stale = hidden_fields(html, f"/applications/{app_id}/decision")
    changes_requested(session_factory, app_id)  # decided in another tab
    f.submit(session_factory, app_id)
    f.review_round(session_factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    before = audit_actions(session_factory, "application", app_id)

    answer = page.post(f"/applications/{app_id}/decision",
                       data={**stale, "outcome": "rejected", "message": "Opted-out patients are still included."})
    assert answer.status_code == 409
    html = answer.get_data(as_text=True)
    refused(html)
    assert "Opted-out patients are still included." in html  # what was typed stays on the form
    assert hidden_fields(html, f"/applications/{app_id}/decision")["round"] == "2"
    found = application(session_factory, app_id)
    assert (found.round, found.state, [d.round for d in found.decisions]) == (2, AppState.UNDER_REVIEW, [1])
    assert audit_actions(session_factory, "application", app_id) == before


def test_a_vote_form_from_round_1_does_not_vote_in_round_2(
        session_factory: sessionmaker[Session], applicant: None, app: Flask) -> None:
    app_id = f.draft(session_factory)
    f.submit(session_factory, app_id)
    with unit_of_work(session_factory) as s:
        found = s.get(Application, app_id)
        assert found is not None
        dac.assign_reviewers(s, f.user(s, "dacchair"), found, [f.user(s, n) for n in ("dac1", "dac2", "laymember")])
        dac.declare_conflict(s, f.user(s, "dac1"), found, False, "")
    page, html = tab(app, session_factory, "dac1", f"/applications/{app_id}")  # round 1, not yet voted
    stale = hidden_fields(html, f"/applications/{app_id}/review")
    f.review_round(session_factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    changes_requested(session_factory, app_id)
    f.submit(session_factory, app_id)
    with unit_of_work(session_factory) as s:
        found = s.get(Application, app_id)
        assert found is not None
        dac.assign_reviewers(s, f.user(s, "dacchair"), found, [])  # the same reviewers: round 2 opens

    answer = page.post(f"/applications/{app_id}/review", data={**stale, "vote": "approve"}, follow_redirects=True)
    refused(answer.get_data(as_text=True))
    found = application(session_factory, app_id)
    assert (found.round, dac.current_reviews(found)) == (2, [])


def test_the_dac_api_takes_the_round_read_and_answers_409_for_an_earlier_one(
        session_factory: sessionmaker[Session], applicant: None, app: Flask) -> None:
    app_id = f.awaiting_decision(session_factory)
    changes_requested(session_factory, app_id)
    f.submit(session_factory, app_id)
    with unit_of_work(session_factory) as s:
        found = s.get(Application, app_id)
        assert found is not None
        dac.assign_reviewers(s, f.user(s, "dacchair"), found, [])
    api = app.test_client()
    vote = api.post(f"/api/v1/applications/{app_id}/reviews", json={"vote": "approve", "round": 1},
                    headers=bearer(session_factory, "dac1"))
    assert vote.status_code == 409 and vote.get_json()["error"] == "conflict"
    refused(vote.get_json()["detail"])
    f.review_round(session_factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    end = (f.TODAY + dt.timedelta(days=300)).isoformat()
    decision = api.post(f"/api/v1/applications/{app_id}/decision", headers=bearer(session_factory, "dacchair"),
                        json={"outcome": "approved", "access_end_date": end, "round": 1})
    assert decision.status_code == 409
    assert application(session_factory, app_id).state == AppState.UNDER_REVIEW
    approved = api.post(f"/api/v1/applications/{app_id}/decision", headers=bearer(session_factory, "dacchair"),
                        json={"outcome": "approved", "access_end_date": end, "round": 2})
    assert approved.status_code == 200 and approved.get_json()["state"] == "approved"


def test_an_exception_answer_does_not_accept_words_reworded_after_the_page_was_opened(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, app: Flask) -> None:
    """Within one round: nobody has answered the exception yet, so its author may reword it; an answer from a page
    that showed the earlier words is refused (the form posts the SHA-256 of the words it showed), and the API
    takes the same digest."""
    request_id = failing_request(session_factory, settings, project_id)
    file_id = get(session_factory, request_id).files[0].id
    on_file(session_factory, request_id, "researcher", service.request_exception, JUSTIFICATION, settings)
    url = f"/outputs/{request_id}/files/{file_id}/exception/decision"
    page, html = tab(app, session_factory, "checker1", f"/outputs/{request_id}")
    stale = hidden_fields(html, url)
    reworded = "Every cell of this table is safe to release, whatever its size."
    on_file(session_factory, request_id, "researcher", service.request_exception, reworded, settings)

    answer = page.post(url, data={**stale, "decision": "accept", "reason": "A published national figure."},
                       follow_redirects=True).get_data(as_text=True)
    assert "reworded since you opened" in answer, answer
    api, headers = app.test_client(), bearer(session_factory, "checker1")
    shown = api.get(f"/api/v1/output-requests/{request_id}", headers=headers).get_json()["files"][0]["exception"]
    assert shown["justification"] == reworded
    api_url = f"/api/v1/output-requests/{request_id}/files/{file_id}/exception/decision"
    body = {"decision": "accept", "reason": "Published.", "justification_sha256": "0" * 64}
    refusal = api.put(api_url, json=body, headers=headers)
    assert refusal.status_code == 409 and "reworded since you opened" in refusal.get_json()["detail"]
    request = get(session_factory, request_id)
    exception = service.current_exception(request, request.files[0])
    assert exception is not None and exception.decisions == []
    assert exception.justification == reworded

    # read afresh, the words shown are the words answered
    fresh = page.get(f"/outputs/{request_id}").get_data(as_text=True)
    page.post(url, data={**hidden_fields(fresh, url), "decision": "refuse", "reason": "Not justified."})
    body["justification_sha256"] = shown["justification_sha256"]
    assert api.put(api_url, json=body, headers=bearer(session_factory, "checker2")).status_code == 200
    request = get(session_factory, request_id)
    exception = service.current_exception(request, request.files[0])
    assert exception is not None
    assert sorted(d.decision for d in exception.decisions) == ["accept", "refuse"]
