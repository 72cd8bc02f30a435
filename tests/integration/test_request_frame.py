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


def test_who_a_request_comes_from_is_one_statement(app: Flask, session_factory: sessionmaker[Session],
                                                   demo_users: dict[str, int]) -> None:
    """A browser session or an API token, with the person and their roles: one statement, whatever the roles."""
    from sqlalchemy import event

    from gateway.config import SecuritySettings
    from gateway.db import unit_of_work
    from gateway.identity import accounts, tokens
    from gateway.identity.sessions import SignInState, live_session, open_session
    from gateway.permissions import permissions_of

    with unit_of_work(session_factory) as s:
        owner = accounts.find_user(s, "dacchair")
        assert owner is not None and len(owner.roles) >= 1
        _, plain = tokens.create_token(s, "test", owner, "frame test", 30)
        _ws, key = open_session(s, owner, SignInState.SIGNED_IN, SecuritySettings(), method="test")
        expected = permissions_of(owner)
    sent: list[str] = []
    event.listen(app.extensions["sde_engine"], "before_cursor_execute", lambda *a: sent.append(a[2]))
    for identify in (lambda s: tokens.user_for_token(s, plain), lambda s: live_session(s, key).user):  # type: ignore[union-attr]
        with session_factory() as s:
            before = len(sent)
            user = identify(s)
            assert user is not None and user.username == "dacchair"
            assert permissions_of(user) and permissions_of(user) <= expected  # a token's scopes may narrow them
            s.rollback()
        assert len([q for q in sent[before:] if q.lstrip().upper().startswith("SELECT")]) == 1


def test_a_nul_character_is_refused_wherever_a_page_request_carries_it(app: Flask, client: FlaskClient,
                                                                         session_factory: sessionmaker[Session],
                                                                         demo_users: dict[str, int]) -> None:
    """Requests with no query and no form body skip the check (gateway.app._refuse_nul_characters); any that could
    carry a NUL still get it."""
    sign_in_session(client, session_factory, "researcher")
    assert client.get("/catalogue/").status_code == 200
    assert client.get("/catalogue/?q=a%00b").status_code == 422
    assert client.get("/catalogue/?q%00=a").status_code == 422
    assert client.get("/catalogue/?q=a%2500b").status_code == 200  # "%00" as text is not a NUL
    app.config["WTF_CSRF_ENABLED"] = False  # the NUL check itself, not the form's token
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        answer = client.post("/account/tokens", data={"name": "laptop\x00", "days": "30"}, content_type=kind)
        assert answer.status_code == 422 and b"cannot be used (NUL)" in answer.data, kind


def test_security_headers_follow_each_apps_settings(settings: object) -> None:
    from gateway.app import create_app
    from gateway.config import SecuritySettings, Settings, WorkspaceSettings

    assert isinstance(settings, Settings)
    secure = settings.model_copy(update={"security": SecuritySettings(https=True),
                                         "workspaces": WorkspaceSettings(hub_url="https://hub.example.org:8443/x")})
    for conf, hsts in ((settings, None), (secure, "max-age=31536000; includeSubDomains")):
        app = create_app(conf)
        try:
            answer = app.test_client().get("/register")
            assert answer.headers.get("Strict-Transport-Security") == hsts
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert answer.headers["Content-Security-Policy"].endswith(
                f"form-action 'self' {'https://hub.example.org:8443' if hsts else 'http://127.0.0.1:8000'}; "
                "base-uri 'none'; object-src 'none'")
        finally:
            app.extensions["sde_engine"].dispose()
