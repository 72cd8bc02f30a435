"""The per-request frame (issue 18): what every page pays before its own work, kept per process where it can be,
never shared between people."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import sign_in_session

HREFS = re.compile(r'<(?:link|script|a|form)\b[^>]*?(?:href|src|action)="([^"]+)"')


def test_a_signed_in_page_does_not_resend_the_cookie_on_every_response(client: FlaskClient,
                                                                         session_factory: sessionmaker[Session],
                                                                         demo_users: dict[str, int]) -> None:
    """The sign-in ends at a fixed time on the server, so re-signing the cookie on each response extends nothing."""
    sign_in_session(client, session_factory, "researcher")
    with client.session_transaction() as sess:
        sess.permanent = True  # as the real sign-in sets it (gateway/web/auth.py)
    first = client.get("/home")  # the CSRF token is written into the cookie once: sent then
    assert first.status_code == 200 and "Set-Cookie" in first.headers
    again = client.get("/home")
    assert again.status_code == 200 and "Set-Cookie" not in again.headers
    assert "Sign out" in again.get_data(as_text=True)
    client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                         again.get_data(as_text=True)).group(1)})  # type: ignore[union-attr]
    assert client.get("/home").status_code == 302  # the server's session decides, whatever the cookie says


def test_layout_links_are_the_same_as_url_for_under_each_script_root(app: Flask, client: FlaskClient,
                                                                      session_factory: sessionmaker[Session],
                                                                      demo_users: dict[str, int]) -> None:
    """The layout's fixed links are built once per process and script root (gateway.app.layout_url)."""
    sign_in_session(client, session_factory, "researcher")
    plain = HREFS.findall(client.get("/home").get_data(as_text=True))
    mounted_page = client.get("/home", base_url="http://localhost/sde")  # the app mounted under /sde
    assert mounted_page.status_code == 200
    mounted = HREFS.findall(mounted_page.get_data(as_text=True))
    again = HREFS.findall(client.get("/home").get_data(as_text=True))
    assert plain == again
    layout = [h for h in plain if h.startswith(("/assets/", "/static/")) or h in {"/", "/search", "/logout", "/home"}]
    assert {"/static/css/app.css", "/static/js/app.js", "/logout", "/home"} <= set(layout)
    assert [h for h in layout if f"/sde{h}" not in mounted] == []  # each script root its own links
    with app.test_request_context("/home"):
        from flask import url_for

        assert url_for("projects.index") in plain and url_for("search.find") in plain
