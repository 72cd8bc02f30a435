"""The public register: no sign-in, HDR UK columns in page, CSV and JSON, approved projects only."""

from __future__ import annotations

import csv
import io

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from gateway.trust import register
from gateway.trust.register import COLUMNS
from projects import lifecycle
from projects.models import Project
from tests.conftest import sign_in_session
from tests.support import factories as f


def test_register_lists_approved_projects_in_every_format(client: FlaskClient, session_factory: sessionmaker[Session],
                                                         demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    f.approved_project(session_factory, title="Hypertension control by borough")
    draft_id = f.draft(session_factory, title="Unsubmitted idea")
    assert draft_id
    page = client.get("/register")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Hypertension control by borough" in html and "Unsubmitted idea" not in html
    rows = list(csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True))))
    assert list(rows[0]) == COLUMNS and len(rows) == 1
    assert rows[0]["Status"] == "Active" and rows[0]["Commercial"] == "No"
    assert rows[0]["Legal Basis (Article 6)"] == "UK GDPR Article 6(1)(e) (public task)"
    data = client.get("/register.json").json  # HDR UK Data Use Schema (tests/integration/test_register_standard.py)
    assert [(d["project"]["londonsde"]["reference"], d["project"]["title"]) for d in data] == [
        (r["Project ID"], r["Project Title"]) for r in rows]
    api = client.get("/api/v1/register").json
    assert api["columns"] == COLUMNS and api["rows"] == rows


def test_register_changes_the_moment_a_change_commits(client: FlaskClient, session_factory: sessionmaker[Session],
                                                      demo_users: dict[str, int],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The page is rebuilt only when the audit head moves; a DAC decision or a suspension shows at once."""
    builds = []
    real_rows = register.rows
    monkeypatch.setattr(register, "rows", lambda *a: builds.append(1) or real_rows(*a))
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    assert "No projects have been approved yet." in client.get("/register").get_data(as_text=True)
    assert client.get("/register.csv").status_code == 200 and client.get("/register.json").json == []
    assert len(builds) == 1  # three reads, one build: nothing changed in between

    project_id = f.approved_project(session_factory, title="Air quality and asthma admissions")
    html = client.get("/register").get_data(as_text=True)
    assert "Air quality and asthma admissions" in html and "No projects have been approved yet." not in html
    assert [r["project"]["londonsde"]["status"] for r in client.get("/register.json").json] == ["active"]

    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        lifecycle.suspend(s, f.user(s, "admin"), project, "Breach under investigation.")
    assert [r["project"]["londonsde"]["status"] for r in client.get("/register.json").json] == ["suspended"]
    assert "Suspended" in client.get("/register").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(client.get("/register.csv").get_data(as_text=True))))
    assert [r["Status"] for r in rows] == ["Suspended"]


def test_signed_in_readers_and_pending_messages_get_their_own_page(client: FlaskClient,
                                                                   session_factory: sessionmaker[Session],
                                                                   demo_users: dict[str, int]) -> None:
    """The page kept for anonymous readers never carries one person's header or messages to another."""
    anonymous = client.get("/register").get_data(as_text=True)
    assert "Sign out" not in anonymous
    sign_in_session(client, session_factory, "researcher")
    signed_in = client.get("/register").get_data(as_text=True)
    assert "Sign out" in signed_in and 'name="csrf_token"' in signed_in
    with client.session_transaction() as sess:
        sess.clear()
        sess["_flashes"] = [("success", "A message for this reader only.")]
    assert "A message for this reader only." in client.get("/register").get_data(as_text=True)
    assert "A message for this reader only." not in client.get("/register").get_data(as_text=True)
    assert "Sign out" not in client.get("/register").get_data(as_text=True)
