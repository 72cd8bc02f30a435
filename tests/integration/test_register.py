"""The public register: no sign-in, HDR UK columns in page, CSV and JSON, approved projects only."""

from __future__ import annotations

import csv
import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
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


class Clock:
    """A clock the test moves by hand (the kept page's age), so nothing here depends on how fast the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_warm_register_page_is_served_without_touching_the_database(app: Flask, client: FlaskClient,
                                                                      session_factory: sessionmaker[Session],
                                                                      demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    f.approved_project(session_factory, title="Air quality and asthma admissions")
    assert "Air quality and asthma admissions" in client.get("/register").get_data(as_text=True)  # cold: rendered
    engine = app.extensions["sde_engine"]
    sent, checkouts = [], []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    event.listen(engine.pool, "checkout", lambda *a: checkouts.append(1))
    warm = client.get("/register")
    assert warm.status_code == 200 and "Air quality and asthma admissions" in warm.get_data(as_text=True)
    assert sent == [] and checkouts == []  # not one statement, not even a connection from the pool
    sign_in_session(client, session_factory, "researcher")
    assert "Sign out" in client.get("/register").get_data(as_text=True)  # signed in: rendered for this person
    assert sent and checkouts


def test_a_change_made_by_another_process_shows_within_the_recheck_interval(app: Flask, client: FlaskClient,
                                                                            session_factory: sessionmaker[Session],
                                                                            demo_users: dict[str, int],
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/public-register.md: a change committed by another worker shows within `public.register_recheck_seconds`
    (2 by default); a change committed in this worker shows on the next request (the test above this one)."""
    from gateway.web import register as register_view

    clock = Clock()
    app.extensions["sde_register_page"] = register_view.PublicPage(2.0, clock=clock)
    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project_id = f.approved_project(session_factory, title="Air quality and asthma admissions")
    assert "Active" in client.get("/register").get_data(as_text=True)
    # From here on this process commits "nothing" as far as the page can tell: as if another process made the change.
    monkeypatch.setattr(register_view, "commits_in_process", lambda: -1)
    clock.now += 1.0
    assert "Active" in client.get("/register").get_data(as_text=True)  # rechecked: same key, kept, clock restarted
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        lifecycle.suspend(s, f.user(s, "admin"), project, "Breach under investigation.")
    clock.now += 1.9
    assert "Suspended" not in client.get("/register").get_data(as_text=True)  # within the bound: the kept page
    clock.now += 0.1
    assert "Suspended" in client.get("/register").get_data(as_text=True)  # at the bound: asked again, rebuilt
    app.extensions["sde_register_page"] = register_view.PublicPage(0.0, clock=clock)  # 0: ask every time
    with unit_of_work(session_factory) as s:
        project = s.get(Project, project_id)
        assert project is not None
        lifecycle.close(s, f.user(s, "admin"), project, "Study finished.")
    assert "Closed" in client.get("/register").get_data(as_text=True)


# What every page answered to someone not signed in carried before the register was kept without a database
# session (issue 18): the kept page must send exactly these.
PUBLIC_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "font-src 'self' https://assets.nhs.uk; connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self' http://127.0.0.1:8000; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Vary": "Cookie",
}


def test_the_kept_register_page_carries_the_same_headers_as_a_rendered_one(app: Flask, client: FlaskClient,
                                                                           demo_users: dict[str, int]) -> None:
    from gateway.web import register as register_view

    clock = Clock()
    app.extensions["sde_register_page"] = register_view.PublicPage(2.0, clock=clock)
    rendered = client.get("/register")
    kept = client.get("/register")
    clock.now += 5
    checked = client.get("/register")  # asked the database again, found no change, served the kept page
    for response in (rendered, kept, checked):
        assert response.status_code == 200
        headers = {k: v for k, v in response.headers.items() if k != "Content-Length"}
        assert headers == PUBLIC_HEADERS
    assert rendered.get_data() == kept.get_data() == checked.get_data()


def test_a_fresh_kept_page_is_answered_before_flask_only_without_a_session_cookie(app: Flask, client: FlaskClient,
                                                                                  demo_users: dict[str, int]) -> None:
    """gateway/web/register.py KeptPageShortcut: the kept page goes out without a Flask request (no hook runs), to
    a request with no session cookie and no query string; anything else reaches the view."""
    from flask import request

    rendered = client.get("/register")
    reached: list[str] = []
    app.before_request_funcs.setdefault(None, []).insert(0, lambda: reached.append(request.full_path))
    kept = client.get("/register")
    assert reached == [] and kept.status_code == 200 and kept.get_data() == rendered.get_data()
    assert client.get("/register?sort=title").status_code == 200
    assert reached == ["/register?sort=title"]
    client.set_cookie("sde_session", "anything")
    assert client.get("/register").status_code == 200
    assert reached == ["/register?sort=title", "/register?"]
