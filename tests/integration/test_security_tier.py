"""The project's security tier: chosen by the DAC chair at approval, audited, shown on the project page and the
public register, and handed to the workspace the gateway starts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from gateway.errors import PermissionDenied, ValidationError
from gateway.identity import accounts, tokens
from gateway.models import AuditEvent
from projects import applications, dac, lifecycle
from projects.models import Application, Project
from tests.conftest import sign_in_session
from tests.support import factories as f
from tests.support.databases import postgres_only
from tests.support.date_boxes import boxes
from tests.support.forms import hidden_fields

HIGH = "High: no copy out, no terminals"


@pytest.fixture
def world(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> sessionmaker[Session]:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
        f.accredit(s, "researcher2")
    return session_factory


def under_review(factory: sessionmaker[Session], title: str = "Asthma and deprivation") -> int:
    app_id = f.draft(factory, title=title)
    f.submit(factory, app_id)
    f.review_round(factory, app_id, {"dac1": "approve", "dac2": "approve", "laymember": "approve"})
    return app_id


def bearer(factory: sessionmaker[Session], username: str) -> dict[str, str]:
    with unit_of_work(factory) as s:
        owner = accounts.find_user(s, username)
        assert owner is not None
        _, plain = tokens.create_token(s, "test", owner, "tier test", 30)
    return {"Authorization": f"Bearer {plain}"}


def project_of(factory: sessionmaker[Session], app_id: int) -> Project:
    with factory() as s:
        return s.scalars(select(Project).where(Project.application_id == app_id)).one()


def events(factory: sessionmaker[Session], action: str) -> list[dict[str, Any]]:
    with factory() as s:
        return [e.details for e in s.scalars(select(AuditEvent).where(AuditEvent.action == action))]


def test_chair_approves_in_the_high_tier_through_the_api(client: FlaskClient, world: sessionmaker[Session]) -> None:
    app_id = under_review(world)
    headers = bearer(world, "dacchair")
    end = (f.TODAY + dt.timedelta(days=200)).isoformat()
    response = client.post(f"/api/v1/applications/{app_id}/decision", headers=headers,
                           json={"outcome": "approved", "access_end_date": end, "security_tier": "high"})
    assert response.status_code == 200, response.json
    project = project_of(world, app_id)
    assert project.security_tier == "high"
    # the decision's audit event and the project's creation both record the tier
    assert [e["security_tier"] for e in events(world, "application.approved")] == ["high"]
    assert [e["security_tier"] for e in events(world, "project.created")] == ["high"]
    body = client.get(f"/api/v1/projects/{project.id}", headers=bearer(world, "researcher")).json
    assert body["security_tier"] == "high"


@pytest.mark.parametrize("bad", ["extreme", "High", "", 2, None])
def test_api_refuses_an_unknown_tier_and_decides_nothing(client: FlaskClient, world: sessionmaker[Session],
                                                        bad: object) -> None:
    app_id = under_review(world)
    end = (f.TODAY + dt.timedelta(days=200)).isoformat()
    body: dict[str, Any] = {"outcome": "approved", "access_end_date": end, "security_tier": bad}
    response = client.post(f"/api/v1/applications/{app_id}/decision", headers=bearer(world, "dacchair"), json=body)
    if bad is None:  # null is "not given": standard
        assert response.status_code == 200
        assert project_of(world, app_id).security_tier == "standard"
        return
    assert response.status_code in (400, 422), response.json
    assert "error" in response.json
    with world() as s:
        assert s.get(Application, app_id).state == "under_review"
        assert s.scalars(select(Project)).all() == []


def test_service_refuses_unknown_tier_and_defaults_to_standard(world: sessionmaker[Session]) -> None:
    app_id = under_review(world)
    decide = dict(outcome="approved", conditions="", message="", access_end_date=f.TODAY + dt.timedelta(days=30),
                  today=f.TODAY)
    with unit_of_work(world) as s, pytest.raises(ValidationError) as refused:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, security_tier="secret", **decide)
    assert "security_tier" in refused.value.field_errors
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, app_id), f.DAC, **decide)
    assert project_of(world, app_id).security_tier == "standard"
    assert [e["security_tier"] for e in events(world, "application.approved")] == ["standard"]


def test_an_amendment_keeps_the_tier_and_cannot_lower_it(world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world, security_tier="high")
    with unit_of_work(world) as s:
        project = s.get(Project, project_id)
        amendment = applications.start_amendment(s, f.user(s, "researcher"), project)
        applications.update_draft(s, f.user(s, "researcher"), amendment,
                                  {"amendment_summary": "A longer lay summary."})
        amendment_id = amendment.id
    f.submit(world, amendment_id)
    f.review_round(world, amendment_id, {"dac1": "approve"})
    decide = dict(outcome="approved", conditions="", message="", access_end_date=None, today=f.TODAY)
    with unit_of_work(world) as s, pytest.raises(ValidationError) as refused:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, security_tier="standard",
                   **decide)
    assert "security_tier" in refused.value.field_errors
    with unit_of_work(world) as s:
        dac.decide(s, f.user(s, "dacchair"), s.get(Application, amendment_id), f.DAC, **decide)
    with world() as s:
        assert s.get(Project, project_id).security_tier == "high"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_chair_chooses_the_tier_on_the_decision_form(client: FlaskClient, world: sessionmaker[Session]) -> None:
    app_id = under_review(world)
    sign_in_session(client, world, "dacchair")
    html = client.get(f"/applications/{app_id}").get_data(as_text=True)
    form = html[html.index('data-testid="decision-form"'):]
    assert "Security tier of the project" in form
    assert HIGH in form and ">Standard<" in form
    end = f.TODAY + dt.timedelta(days=100)
    post = {**hidden_fields(html, f"/applications/{app_id}/decision"), "outcome": "approved",
            **boxes("access_end_date", end), "conditions": "", "message": ""}
    # a tier that is not offered is refused with a message, and nothing is decided
    response = client.post(f"/applications/{app_id}/decision", data={**post, "security_tier": "extreme"},
                           follow_redirects=True)
    assert "Choose the security tier." in response.get_data(as_text=True)
    with world() as s:
        assert s.get(Application, app_id).state == "under_review"
    response = client.post(f"/applications/{app_id}/decision", data={**post, "security_tier": "high"},
                           follow_redirects=True)
    assert "Decision recorded: approved." in response.get_data(as_text=True)
    project = project_of(world, app_id)
    assert project.security_tier == "high"
    # the project page shows the plain label, and tells the team what the tier means for their workspace
    sign_in_session(client, world, "researcher")
    page = client.get(f"/projects/{project.id}").get_data(as_text=True)
    assert re.search(r'data-testid="security-tier">\s*' + re.escape(HIGH), page)
    assert "high" not in re.findall(r'data-testid="security-tier">([^<]*)<', page)


def test_register_shows_each_project_tier_in_every_format(client: FlaskClient, world: sessionmaker[Session]) -> None:
    f.approved_project(world, title="Standard project")
    f.approved_project(world, applicant="researcher2", title="Sensitive project", security_tier="high")
    rows = list(csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True))))
    tiers = {r["Project Title"]: r["Security Tier"] for r in rows}
    assert tiers == {"Standard project": "Standard", "Sensitive project": HIGH}
    entries = client.get("/register.json").json
    assert {r["project"]["title"]: r["project"]["londonsde"]["securityTierLabel"] for r in entries} == tiers
    assert {r["project"]["title"]: r["project"]["londonsde"]["securityTier"] for r in entries} == {
        "Standard project": "standard", "Sensitive project": "high"}
    html = client.get("/register").get_data(as_text=True)
    assert f'<dt class="nhsuk-summary-list__key">Security Tier</dt><dd class="nhsuk-summary-list__value">{HIGH}</dd>' \
        in html
    # raw values never reach people
    assert ">high<" not in html and ">standard<" not in html


def test_administrator_raises_an_active_project_with_a_reason(client: FlaskClient,
                                                              world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with unit_of_work(world) as s:
        project = s.get(Project, project_id)
        with pytest.raises(PermissionDenied):
            lifecycle.raise_security_tier(s, f.user(s, "dacchair"), project, "Sensitive")
        with pytest.raises(ValidationError):
            lifecycle.raise_security_tier(s, f.user(s, "admin"), project, "   ")
    with world() as s:
        assert s.get(Project, project_id).security_tier == "standard"
    # the page: a reason is needed, then the tier is high, audited, and the form is gone
    sign_in_session(client, world, "admin")
    html = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert 'data-testid="raise-tier-form"' in html
    url = f"/projects/{project_id}/security-tier"
    refused = client.post(url, data={"csrf_token": _csrf(html), "reason": ""}, follow_redirects=True)
    assert "Give a reason for raising the security tier." in refused.get_data(as_text=True)
    done = client.post(url, data={"csrf_token": _csrf(html), "reason": "Linked to a rare-disease registry"},
                       follow_redirects=True)
    page = done.get_data(as_text=True)
    assert "is now in the high security tier" in page and 'data-testid="raise-tier-form"' not in page
    assert re.search(r'data-testid="security-tier">\s*' + re.escape(HIGH), page)
    assert events(world, "project.security_tier_raised") == [
        {"from": "standard", "to": "high", "reason": "Linked to a rare-disease registry"}]
    # raising again, or through the API, is refused by state; nobody lowers it this way
    again = client.post(f"/api/v1/projects/{project_id}/security-tier", headers=bearer(world, "admin"),
                        json={"reason": "again"})
    assert again.status_code == 409 and "already" in str(again.json)
    assert len(events(world, "project.security_tier_raised")) == 1


def test_a_suspended_project_cannot_be_raised(client: FlaskClient, world: sessionmaker[Session]) -> None:
    project_id = f.approved_project(world)
    with unit_of_work(world) as s:
        lifecycle.suspend(s, f.user(s, "admin"), s.get(Project, project_id), "Investigation")
    response = client.post(f"/api/v1/projects/{project_id}/security-tier", headers=bearer(world, "admin"),
                           json={"reason": "Sensitive"})
    assert response.status_code == 409
    with world() as s:
        assert s.get(Project, project_id).security_tier == "standard"


@postgres_only  # row locks: SQLite runs one writer at a time
def test_a_workspace_starting_while_the_tier_is_raised_starts_high(world: sessionmaker[Session]) -> None:
    """The start reads the tier under the project's row lock, which the raise holds to its commit: without it the
    start read "standard", the raise found no session to stop, and the server ran in the old tier."""
    import threading
    from pathlib import Path

    from gateway.workspaces.service import _session_for

    project_id = f.approved_project(world)
    with world() as s:
        uid = f.user(s, "researcher").id
    results: list[tuple[int, str]] = []
    raising = world()
    with raising.begin():
        lifecycle.raise_security_tier(raising, f.user(raising, "admin"), raising.get(Project, project_id),
                                      "Linked to a registry")
        start = threading.Thread(target=lambda: results.append(
            _session_for(world, uid, project_id, "p", "_u9", "small", Path("/srv/x/v1"))))
        start.start()
        start.join(1.5)
        assert start.is_alive(), "the start did not wait for the raise"
    raising.close()
    start.join(30)
    assert [tier for _, tier in results] == ["high"]
