"""Checker statistics from real reviews built through the services, the real worker, the page and the API.

Three requests on one project, checked by checker1 and checker2:
- R1, a suppressed table (automatic: pass): both approve; approved and released.
- R2, an unsuppressed table with a cell of 3 (automatic: fail, the threshold rule): checker1 approves, checker2
  requests changes; returned; the researcher hands over a suppressed version 2; both approve; released.
- R3, a suppressed table (automatic: pass): both request changes; rejected.
So: 4 reviewed file versions, 4 pairs of which 3 agree; checker1's approval of R2 version 1 is overturned (the
version had to be replaced), nobody else's is; R3's automatic "pass" is overturned by people, no other verdict is.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.db import unit_of_work
from gateway.identity import tokens
from gateway.outputs import service, statistics
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
    review_all,
    work,
)
from tests.support import factories as f
from tests.support.handover import hand_over


@pytest.fixture
def project_id(session_factory: sessionmaker[Session], settings: Settings, demo_users: dict[str, int]) -> int:
    return ready_project(session_factory, settings)


def submitted(factory: sessionmaker[Session], settings: Settings, project_id: int, name: str, suppress: bool) -> int:
    folder = outputs_of(settings, factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, name, suppress=suppress)
    request_id = new_request(factory, settings, project_id, [f"{name}.csv"])
    act(factory, request_id, "researcher", service.submit, settings)
    work(factory, settings)
    return request_id


def scenario(factory: sessionmaker[Session], settings: Settings, project_id: int) -> dict[str, int]:
    r1 = submitted(factory, settings, project_id, "everyone", suppress=True)
    review_all(factory, r1, "checker1", "approve")
    review_all(factory, r1, "checker2", "approve")
    act(factory, r1, "checker1", service.decide, "approve", "")

    r2 = submitted(factory, settings, project_id, "small", suppress=False)
    assert get(factory, r2).files[0].check_status == "fail"
    review_all(factory, r2, "checker1", "approve")
    review_all(factory, r2, "checker2", "changes_requested")
    act(factory, r2, "checker2", service.decide, "return", "Suppress the South/M cell.")
    folder = outputs_of(settings, factory, "researcher", project_id)
    notebook_crosstab(load_extract(settings, factory, project_id), folder, "small", suppress=True)
    hand_over(factory, settings, r2, folder, "small.csv")
    act(factory, r2, "researcher", service.submit, settings)
    work(factory, settings)
    review_all(factory, r2, "checker1", "approve")
    review_all(factory, r2, "checker2", "approve")
    act(factory, r2, "checker1", service.decide, "approve", "")

    r3 = submitted(factory, settings, project_id, "again", suppress=True)
    review_all(factory, r3, "checker2", "changes_requested")
    review_all(factory, r3, "checker1", "changes_requested")
    act(factory, r3, "checker1", service.decide, "reject", "This table was already released as request 1.")
    work(factory, settings)
    assert [get(factory, r).state for r in (r1, r2, r3)] == [OutputState.RELEASED, OutputState.RELEASED,
                                                             OutputState.REJECTED]
    return {"r1": r1, "r2": r2, "r3": r3}


def figures_of(factory: sessionmaker[Session]) -> dict[str, Any]:
    with factory() as s:
        return statistics.as_json(*statistics.checker_statistics(s))


def test_agreement_overturns_and_turnaround_from_real_reviews(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    scenario(session_factory, settings, project_id)
    figures = figures_of(session_factory)
    assert figures["reviewed_file_versions"] == 4
    assert figures["agreement"] == {"count": 3, "total": 4, "rate": 0.75}
    assert figures["checker_overturned"] == {"count": 1, "total": 8, "rate": 0.125}
    assert figures["automatic_overturned"] == {"count": 1, "total": 4, "rate": 0.25}
    checkers = {c["username"]: c for c in figures["checkers"]}
    assert checkers["checker1"]["votes"] == 4 and checkers["checker1"]["overturned"]["count"] == 1
    assert checkers["checker2"]["overturned"] == {"count": 0, "total": 4, "rate": 0.0}
    assert checkers["checker1"]["name"] == "Ali Hassan (output checker)"
    # four rounds (R2 twice), each reviewed and decided; a review never precedes its submission
    turnaround = figures["turnaround"]
    assert turnaround["to_first_review"]["n"] == 4 and turnaround["to_decision"]["n"] == 4
    assert 0 <= turnaround["to_first_review"]["median_hours"] <= turnaround["to_first_review"]["p90_hours"]
    assert turnaround["to_first_review"]["p90_hours"] <= turnaround["to_decision"]["p90_hours"]
    assert checkers["checker2"]["turnaround"]["n"] == 4
    # by rule: only R2's first version has a cell the threshold rule flagged and nothing mitigated (the others'
    # small cells are suppressed); the checkers disagreed on it and it was replaced
    rules = {r["rule"]: r for r in figures["rules"]}
    assert set(rules) == {"threshold", "none"}
    threshold, none = rules["threshold"], rules["none"]
    assert threshold["label"] == "Minimum threshold (too few people in a cell)"
    assert threshold["file_versions"] == 1
    assert threshold["agreement"] == {"count": 0, "total": 1, "rate": 0.0}
    assert threshold["approved"] == {"count": 0, "total": 1, "rate": 0.0}
    assert threshold["automatic_overturned"]["count"] == 0
    assert none["file_versions"] == 3 and none["agreement"]["count"] == 3
    assert none["approved"] == {"count": 2, "total": 3, "rate": 0.6667}
    assert none["automatic_overturned"] == {"count": 1, "total": 3, "rate": 0.3333}


def test_a_vote_still_blind_to_the_other_checker_is_not_counted(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int) -> None:
    scenario(session_factory, settings, project_id)
    before = figures_of(session_factory)
    pending = submitted(session_factory, settings, project_id, "pending", suppress=True)
    review_all(session_factory, pending, "checker1", "changes_requested")  # checker2 has not reviewed yet
    assert get(session_factory, pending).state == OutputState.PARTIALLY_REVIEWED
    during = figures_of(session_factory)
    assert {k: v for k, v in during.items() if k != "turnaround"} == \
        {k: v for k, v in before.items() if k != "turnaround"}
    review_all(session_factory, pending, "checker2", "approve")  # both in: no longer blind, counted
    after = figures_of(session_factory)
    assert after["reviewed_file_versions"] == 5
    assert after["agreement"] == {"count": 3, "total": 5, "rate": 0.6}


def test_a_draft_vote_is_not_counted(session_factory: sessionmaker[Session], settings: Settings,
                                     project_id: int) -> None:
    pending = submitted(session_factory, settings, project_id, "draft", suppress=True)
    with unit_of_work(session_factory) as s:
        request = s.get(OutputRequest, pending)
        assert request is not None
        service.vote(s, f.user(s, "checker1"), request, request.files[0], "approve")  # cast, never submitted
    assert figures_of(session_factory)["checkers"] == []


def test_the_dashboard_page_and_the_api_show_the_same_figures(
        session_factory: sessionmaker[Session], settings: Settings, project_id: int, client: FlaskClient) -> None:
    scenario(session_factory, settings, project_id)
    sign_in_session(client, session_factory, "checker2")
    queue = client.get("/outputs/queue").get_data(as_text=True)
    assert "/outputs/statistics/" in queue
    page = client.get("/outputs/statistics/").get_data(as_text=True)
    assert "75% <span class=\"nhsuk-body-s\">(3 of 4)</span>" in page
    assert "Ali Hassan (output checker)" in page and "Minimum threshold (too few people in a cell)" in page
    assert "threshold</td>" not in page  # rule names are shown through the label mapping
    with unit_of_work(session_factory) as s:
        checker = f.user(s, "checker2")
        _token, secret = tokens.create_token(s, checker, checker, "statistics", scopes=["review_outputs"])
    answer = client.get("/api/v1/output-statistics", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    assert answer.get_json() == figures_of(session_factory)
    with unit_of_work(session_factory) as s:
        checker = f.user(s, "checker2")
        _token, other = tokens.create_token(s, checker, checker, "read projects", scopes=["view_projects"])
    assert client.get("/api/v1/output-statistics", headers={"Authorization": f"Bearer {other}"}).status_code == 403
