"""Page behaviour: forms keep input and show every error, CSRF, headers, and error pages that leak nothing."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from gateway.identity import accounts
from gateway.web.access import public
from tests.conftest import sign_in_session


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_create_user_form_rerenders_with_every_error_and_keeps_input(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "admin")
    token = csrf_from(client.get("/admin/users/new").get_data(as_text=True))
    response = client.post("/admin/users/new", data={"csrf_token": token, "username": "Bad Name",
                                                     "display_name": "Keep Me", "password": "short"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "There is a problem" in html
    assert "Use 2 to 64 lower-case letters" in html and "at least 12 characters" in html
    assert 'value="Keep Me"' in html and 'value="Bad Name"' in html
    with session_factory() as s:
        assert accounts.find_user(s, "bad name") is None


def test_post_without_csrf_token_is_refused_and_changes_nothing(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "admin")
    response = client.post("/admin/users/new", data={"username": "sneaky", "display_name": "S",
                                                     "password": "a-long-password-3"})
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)
    with session_factory() as s:
        assert accounts.find_user(s, "sneaky") is None


def test_login_page_failure_shows_message_and_keeps_username(client: FlaskClient, demo_users: dict[str, int]) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": "researcher", "password": "nope"})
    html = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "The username or password is not right." in html
    assert 'value="researcher"' in html and 'value="nope"' not in html


def test_security_headers_on_every_page(client: FlaskClient) -> None:
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    # the NHS fonts come from the NHS asset host; nothing else may
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["font-src"] == "'self' https://assets.nhs.uk"
    assert [name for name, value in directives.items() if "assets.nhs.uk" in value] == ["font-src"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_error_pages_leak_nothing(app: Flask, client: FlaskClient) -> None:
    @app.get("/boom-for-test")
    @public
    def boom() -> str:
        raise RuntimeError("secret internal detail /etc/passwd")
    response = client.get("/boom-for-test")
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "secret internal detail" not in html and "Traceback" not in html
    assert "Sorry, there is a problem with the service" in html
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "Page not found" in missing.get_data(as_text=True)


def test_undeclared_route_is_refused(app: Flask, client: FlaskClient) -> None:
    @app.get("/undeclared-for-test")
    def undeclared() -> str:
        return "should never be served"

    assert client.get("/undeclared-for-test").status_code == 403


def test_nav_shows_only_what_the_role_may_use(client: FlaskClient, session_factory: sessionmaker[Session],
                                             demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "auditor")
    html = client.get("/home").get_data(as_text=True)
    assert "Audit log" in html and "/admin/users" not in html
    sign_in_session(client, session_factory, "admin")
    html = client.get("/home").get_data(as_text=True)
    assert "/admin/users" in html and "/audit/" not in html


def test_audit_page_filters_and_csv_export(client: FlaskClient, session_factory: sessionmaker[Session],
                                           demo_users: dict[str, int]) -> None:
    sign_in_session(client, session_factory, "auditor")
    html = client.get("/audit/?action=user.created&actor=demo-seed").get_data(as_text=True)
    assert html.count("user.created") >= 13
    bad = client.get("/audit/?since-day=21&since-month=11&since-year=26")
    assert bad.status_code == 422 and "The from date must include a year with 4 numbers." in bad.get_data(as_text=True)
    assert 'value="26"' in bad.get_data(as_text=True)
    csv_response = client.get("/audit/events.csv?action=user.created")
    lines = csv_response.get_data(as_text=True).strip().splitlines()
    csv_response.close()
    assert lines[0].startswith("seq,occurred_at,actor,action")
    assert len(lines) == 14 and all(",user.created," in line for line in lines[1:])
    assert csv_response.headers["Content-Disposition"].startswith("attachment")


def _project_nav(html: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The project navigation of a page: the current page's label, and the (href, label) of every link."""
    nav = re.search(r'<nav class="nhsuk-contents-list"[^>]*aria-label="Pages of this project".*?</nav>', html, re.S)
    assert nav, "no project navigation on the page"
    current = re.findall(r'aria-current="page"><span class="nhsuk-contents-list__current">([^<]+)</span>', nav.group(0))
    return current, re.findall(r'<a class="nhsuk-contents-list__link" href="([^"]+)">([^<]+)</a>', nav.group(0))


def test_project_pages_list_in_their_navigation_only_the_pages_this_person_may_open(
        client: FlaskClient, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    from gateway.db import unit_of_work
    from tests.support import factories as f

    with unit_of_work(session_factory) as s:
        f.accredit(s, "researcher")
    project = f.approved_project(session_factory)
    base = f"/projects/{project}"
    pages = {"Overview": base, "Data": f"{base}/data", "Workspace sessions": f"{base}/sessions",
             "Outputs and publications": f"{base}/outputs", "Charges": f"/charging/projects/{project}/statement"}
    sees = {"researcher": list(pages),  # the lead: every page, their charges too
            "checker1": ["Overview", "Data", "Outputs and publications"],
            "finance": ["Overview", "Data", "Outputs and publications", "Charges"],
            "auditor": ["Overview", "Data", "Workspace sessions", "Outputs and publications"]}
    for username, labels in sees.items():
        sign_in_session(client, session_factory, username)
        for label in labels:
            response = client.get(pages[label])
            assert response.status_code == 200, (username, label)
            current, links = _project_nav(response.get_data(as_text=True))
            assert current == [label], (username, label)
            assert links == [(pages[other], other) for other in labels if other != label], (username, label)
        for label in set(pages) - set(labels):  # a page left out of the navigation is refused too
            assert client.get(pages[label]).status_code == 403, (username, label)
