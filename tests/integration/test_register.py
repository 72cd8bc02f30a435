"""The public register: no sign-in, HDR UK columns in page, CSV and JSON, approved projects only."""

from __future__ import annotations

import csv
import io

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import unit_of_work
from projects.register import COLUMNS
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
    assert "UK GDPR Article 6(1)(e)" in rows[0]["Legal Basis"]
    data = client.get("/register.json").json
    assert data == rows
    api = client.get("/api/v1/register").json
    assert api["columns"] == COLUMNS and api["rows"] == rows
