"""Issue 15, findings 1-6: each attack on sign-in reproduced through the real pages and API, then refused.

Everything here goes through HTTP (the test client against the real app and database), as an attacker would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from gateway.app import create_app
from gateway.config import SecuritySettings, Settings
from gateway.db import unit_of_work
from gateway.identity import accounts
from gateway.models import ApiToken, AuditEvent, User
from tests.integration.test_pages import csrf_from
from tests.support.databases import postgres_only
from tests.support.enrolment_mail import follow, newest_code, newest_link, prove_email

PASSWORD = "demo-password"
COOKIE = "sde_session"


# --- helpers: a person (or an attacker) using the pages -------------------------------------------------------

def post(client: FlaskClient, url: str, data: dict[str, Any], form_page: str | None = None) -> TestResponse:
    """Post a form the way a browser does: read the CSRF token from the page that shows the form."""
    token = csrf_from(client.get(form_page or url).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


def password_step(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    return post(client, "/login", {"username": username, "password": password})


def any_token(client: FlaskClient) -> str:
    """The session's CSRF token from a page this client can see (the sign-in page, or the account page)."""
    page = client.get("/login")
    if page.status_code != 200:  # signed in: /login sends you on
        page = client.get("/account/")
    return csrf_from(page.get_data(as_text=True))


def code_step(client: FlaskClient, code: str) -> TestResponse:
    return client.post("/login/code", data={"csrf_token": any_token(client), "code": code})


def location(response: TestResponse) -> str:
    return response.headers.get("Location", "")


def signed_in(client: FlaskClient) -> bool:
    return client.get("/home").status_code == 200


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def client_with(app: Flask, cookie: str) -> FlaskClient:
    other = app.test_client()
    other.set_cookie(COOKIE, cookie)
    return other


def events(factory: sessionmaker[Session], action: str) -> list[AuditEvent]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def user_row(factory: sessionmaker[Session], username: str) -> User:
    with factory() as s:
        found = accounts.find_user(s, username)
        assert found is not None
        s.expunge(found)
        return found


def enrol_totp(app: Flask, username: str) -> str:
    """Set up an authenticator from the account page, as the person would (the emailed link first); returns the
    secret."""
    client = app.test_client()
    assert password_step(client, username).status_code == 302
    prove_email(client, app.extensions["sde_sessionmaker"], username)
    page = client.get("/account/second-factor").get_data(as_text=True)
    match = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page)
    assert match, "no secret on the enrolment page"
    secret = match.group(1)
    response = client.post("/account/second-factor", data={"csrf_token": csrf_from(page),
                                                            "code": pyotp.TOTP(secret).now()})
    assert "Save your recovery codes" in response.get_data(as_text=True)
    post(client, "/logout", {}, form_page="/home")
    return secret


def fresh_code(secret: str, factory: sessionmaker[Session], username: str) -> str:
    """A code the gateway has not seen yet (each 30-second code is accepted once)."""
    with unit_of_work(factory) as s:
        user = accounts.find_user(s, username)
        assert user is not None
        user.totp_last_step = None  # test set-up only: lets the same half-minute's code be used again
    return pyotp.TOTP(secret).now()


@pytest.fixture
def totp_user(app: Flask, demo_users: dict[str, int]) -> str:
    return enrol_totp(app, "checker1")


# --- finding 1: the second factor skipped through the enrolment-finished URL ------------------------------------

def test_finding1_enrolled_url_does_not_skip_the_code(app: Flask, client: FlaskClient, totp_user: str,
                                                      session_factory: sessionmaker[Session]) -> None:
    response = password_step(client, "checker1")
    assert location(response).endswith("/login/code")
    before = len(events(session_factory, "auth.signed_in"))
    skipped = client.get("/login/enrolled")
    assert skipped.status_code in (302, 404)
    assert not location(skipped).endswith("/home")
    assert not signed_in(client)
    assert client.get("/home").headers["Location"].endswith("/login/code")  # still asked for the code
    assert len(events(session_factory, "auth.signed_in")) == before


# Every step page requested from every other state is refused: anonymous, mid-code, mid-enrolment, signed in.
STEP_PAGES = ["/login/code", "/login/verify", "/login/enrol", "/login/new-password"]


def _reach(app: Flask, state: str, session_factory: sessionmaker[Session]) -> FlaskClient:
    client = app.test_client()
    if state == "code":
        enrol_totp(app, "checker1")
        assert location(password_step(client, "checker1")).endswith("/login/code")
    elif state in ("verify", "enrol"):
        with unit_of_work(session_factory) as s:
            admin = accounts.find_user(s, "admin")
            assert admin is not None
            accounts.set_totp_required(s, admin, {"auditor"}, reason="")
        assert location(password_step(client, "auditor")).endswith("/login/verify")
        if state == "enrol":
            assert location(follow(client, newest_link(session_factory, "auditor"))).endswith("/login/enrol")
    elif state == "signed_in":
        assert location(password_step(client, "researcher")).endswith("/home")
    return client


@pytest.mark.parametrize("state", ["anonymous", "code", "verify", "enrol", "signed_in"])
def test_each_step_refuses_requests_from_another_state(app: Flask, session_factory: sessionmaker[Session],
                                                       demo_users: dict[str, int], state: str) -> None:
    client = _reach(app, state, session_factory)
    own = {"code": "/login/code", "verify": "/login/verify", "enrol": "/login/enrol"}.get(state)
    for page in STEP_PAGES:
        if page == own:
            assert client.get(page).status_code == 200
            continue
        for method in ("GET", "POST"):
            token = any_token(client)
            response = client.open(page, method=method, data={"csrf_token": token, "code": "123456",
                                                              "password": "a-whole-new-pass-77",
                                                              "password_again": "a-whole-new-pass-77"})
            assert response.status_code in (302, 303), f"{method} {page} from {state}: {response.status_code}"
            assert not location(response).endswith(page)
    assert signed_in(client) == (state == "signed_in")
    assert client.get("/login/enrolled").status_code == 404  # the old finishing URL is gone


def test_a_half_done_cookie_does_not_become_a_signed_in_one(app: Flask, client: FlaskClient, totp_user: str,
                                                           session_factory: sessionmaker[Session]) -> None:
    """A copy of the cookie taken at the code step stays useless after the person finishes signing in."""
    password_step(client, "checker1")
    half_done = cookie_of(client)
    assert location(code_step(client, fresh_code(totp_user, session_factory, "checker1"))).endswith("/home")
    assert signed_in(client)
    stale = client_with(app, half_done)
    assert not signed_in(stale)
    assert location(stale.get("/login/code")).endswith("/login")
    # and replaying the finished step is refused too
    assert location(code_step(client, pyotp.TOTP(totp_user).now())).endswith("/login")


def test_password_of_another_account_does_not_mix_with_a_half_done_sign_in(
        app: Flask, client: FlaskClient, totp_user: str, session_factory: sessionmaker[Session]) -> None:
    """Half-way as checker1 (attacker's own), then the password of finance: checker1's code cannot finish it."""
    enrol_totp(app, "finance")
    password_step(client, "checker1")
    first = cookie_of(client)
    assert location(password_step(client, "finance")).endswith("/login/code")
    own_code = fresh_code(totp_user, session_factory, "checker1")
    assert code_step(client, own_code).status_code == 401  # finance's step wants finance's code
    assert not signed_in(client)
    assert not signed_in(client_with(app, first))  # the replaced half-done sign-in is over
    assert location(code_step(client_with(app, first), own_code)).endswith("/login")


def test_enrolment_cannot_replace_an_authenticator_already_set_up(
        app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """Two tabs open on the enrolment page: the second confirmation must not overwrite the first secret."""
    client = app.test_client()
    password_step(client, "researcher2")
    prove_email(client, session_factory, "researcher2")
    tab1 = client.get("/account/second-factor").get_data(as_text=True)
    secret1 = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', tab1).group(1)  # type: ignore[union-attr]
    client.post("/account/second-factor", data={"csrf_token": csrf_from(tab1), "code": pyotp.TOTP(secret1).now()})
    stored = user_row(session_factory, "researcher2").totp_secret
    response = client.post("/account/second-factor", data={"csrf_token": csrf_from(tab1),
                                                            "code": pyotp.TOTP(secret1).now()})
    assert "Save your recovery codes" not in response.get_data(as_text=True)
    assert user_row(session_factory, "researcher2").totp_secret == stored == secret1


def test_recovery_code_finishes_sign_in_once(app: Flask, client: FlaskClient, session_factory: sessionmaker[Session],
                                             demo_users: dict[str, int]) -> None:
    other = app.test_client()
    password_step(other, "dac1")
    prove_email(other, session_factory, "dac1")
    page = other.get("/account/second-factor").get_data(as_text=True)
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', page).group(1)  # type: ignore[union-attr]
    shown = other.post("/account/second-factor", data={"csrf_token": csrf_from(page),
                                                        "code": pyotp.TOTP(secret).now()}).get_data(as_text=True)
    recovery = re.findall(r'<li class="sde-code">([A-Z0-9-]+)</li>', shown)[0]
    password_step(client, "dac1")
    assert location(code_step(client, recovery)).endswith("/home")
    post(client, "/logout", {}, form_page="/home")
    password_step(client, "dac1")
    assert code_step(client, recovery).status_code == 401
    assert [e.details["method"] for e in events(session_factory, "auth.signed_in")][-1] == "password+recovery_code"


# --- finding 2: lockout over passwords and codes together; the code step is rate limited -----------------------

def test_finding2_a_right_password_does_not_reset_the_failure_count(
        client: FlaskClient, totp_user: str, session_factory: sessionmaker[Session]) -> None:
    """The limit is 3 here: two wrong passwords, the right one, then one wrong code locks the account."""
    for _ in range(2):
        assert password_step(client, "checker1", "wrong-password").status_code == 401
    assert location(password_step(client, "checker1")).endswith("/login/code")
    assert user_row(session_factory, "checker1").failed_logins == 2
    locked = code_step(client, "000000")
    assert location(locked).endswith("/login")
    assert user_row(session_factory, "checker1").locked_until is not None
    assert events(session_factory, "auth.locked")
    assert password_step(client, "checker1").status_code == 401  # even the right password, now


def test_finding2_re_entering_the_password_does_not_buy_more_code_guesses(
        client: FlaskClient, totp_user: str, session_factory: sessionmaker[Session]) -> None:
    guesses = 0
    for _ in range(4):
        if password_step(client, "checker1").status_code != 302:
            break
        for _ in range(2):
            if code_step(client, f"{guesses:06d}").status_code != 401:
                break
            guesses += 1
    assert guesses <= 3  # the limit, however the guesses are spread
    assert user_row(session_factory, "checker1").locked_until is not None
    assert location(code_step(client, fresh_code(totp_user, session_factory, "checker1"))).endswith("/login")


def test_only_a_full_sign_in_resets_the_count(client: FlaskClient, totp_user: str,
                                              session_factory: sessionmaker[Session]) -> None:
    password_step(client, "checker1", "wrong-password")
    password_step(client, "checker1")
    assert user_row(session_factory, "checker1").failed_logins == 1
    assert location(code_step(client, fresh_code(totp_user, session_factory, "checker1"))).endswith("/home")
    assert user_row(session_factory, "checker1").failed_logins == 0


@pytest.fixture
def generous_app(settings: Settings) -> Iterator[Flask]:
    """A lockout too high to reach, so only the rate limit stands in the way."""
    limited = settings.model_copy(update={"security": SecuritySettings(
        max_failed_logins=100, second_factor_limit="4/minute")})
    application = create_app(limited)
    yield application
    application.extensions["sde_engine"].dispose()


def test_finding2_the_code_step_is_rate_limited(generous_app: Flask, session_factory: sessionmaker[Session],
                                                demo_users: dict[str, int]) -> None:
    del session_factory
    factory = generous_app.extensions["sde_sessionmaker"]
    enrol_totp(generous_app, "checker1")
    client = generous_app.test_client()
    password_step(client, "checker1")
    statuses = [code_step(client, f"{n:06d}").status_code for n in range(6)]
    assert statuses[:4] == [401] * 4
    assert statuses[4:] == [429, 429]
    with factory() as s:
        user = accounts.find_user(s, "checker1")
        assert user is not None and user.failed_logins == 4  # refused attempts never reached the check
    # the limit follows the account, not the cookie: signing in again does not reset it
    other = generous_app.test_client()
    password_step(other, "checker1")
    assert code_step(other, "999999").status_code == 429


# --- finding 3: signing out ends the session on the server ----------------------------------------------------

def test_finding3_a_copied_cookie_is_dead_after_logout(app: Flask, client: FlaskClient,
                                                       session_factory: sessionmaker[Session],
                                                       demo_users: dict[str, int]) -> None:
    password_step(client, "researcher")
    copied = cookie_of(client)
    assert signed_in(client_with(app, copied))
    post(client, "/logout", {}, form_page="/home")
    assert not signed_in(client)
    thief = client_with(app, copied)
    assert not signed_in(thief)
    assert location(thief.get("/home")).startswith("/login")
    assert events(session_factory, "auth.signed_out")


def test_logout_of_one_device_leaves_the_others(app: Flask, demo_users: dict[str, int]) -> None:
    laptop, phone = app.test_client(), app.test_client()
    password_step(laptop, "researcher")
    password_step(phone, "researcher")
    post(laptop, "/logout", {}, form_page="/home")
    assert not signed_in(laptop)
    assert signed_in(phone)


def test_sign_out_everywhere_ends_every_session(app: Flask, session_factory: sessionmaker[Session],
                                                demo_users: dict[str, int]) -> None:
    laptop, phone = app.test_client(), app.test_client()
    password_step(laptop, "researcher")
    password_step(phone, "researcher")
    copied = cookie_of(phone)
    post(laptop, "/account/sign-out-everywhere", {}, form_page="/account/")
    assert not signed_in(laptop) and not signed_in(phone) and not signed_in(client_with(app, copied))
    assert events(session_factory, "auth.signed_out_everywhere")


def test_a_deactivated_account_loses_its_open_sessions(app: Flask, session_factory: sessionmaker[Session],
                                                       demo_users: dict[str, int]) -> None:
    client = app.test_client()
    password_step(client, "researcher")
    with unit_of_work(session_factory) as s:
        admin, target = accounts.find_user(s, "admin"), accounts.find_user(s, "researcher")
        assert admin and target
        accounts.set_active(s, admin, target, False)
    assert not signed_in(client)


# --- finding 4: the sign-in page cannot send people to another site --------------------------------------------

NASTY_NEXT = ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "//evil.example", "/\\evil.example",
              "\\/evil.example", "/\\/evil.example", "https://evil.example/", "http:evil.example", " //evil.example",
              "/%2F/evil.example", "/%5Cevil.example", "\x00/evil", "/\u3000/evil.example", "/\uff0f/evil.example",
              "//\u200bevil.example", "/home\r\nSet-Cookie: x=1", "javascript:alert(1)", "/" + "a" * 5000]


def _same_site(target: str) -> bool:
    """What a browser would do with the Location: tabs and newlines removed, backslashes read as slashes."""
    browser_view = re.sub(r"[\t\n\r]", "", target).replace("\\", "/")
    resolved = urlsplit(urljoin("http://localhost/", browser_view))
    return (resolved.netloc == "localhost" and target.startswith("/") and not target.startswith("//")
            and target.isascii() and not any(ord(c) < 0x21 or ord(c) == 0x7f for c in target))


@pytest.mark.parametrize("target", ["/\t/evil.example", "/\n/evil.example", "//evil.example", "/\\evil.example"])
def test_finding4_next_never_leaves_the_site_after_a_real_sign_in(app: Flask, demo_users: dict[str, int],
                                                                 target: str) -> None:
    client = app.test_client()
    page = client.get("/login?next=" + quote(target, safe=""))
    assert page.status_code == 200
    response = client.post("/login", data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                           "username": "researcher", "password": PASSWORD})
    assert response.status_code == 302
    assert _same_site(location(response)), location(response)


def test_finding4_a_good_next_is_kept(app: Flask, demo_users: dict[str, int]) -> None:
    client = app.test_client()
    page = client.get("/login?next=" + quote("/projects/?q=a b&x=é", safe=""))
    response = client.post("/login", data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                           "username": "researcher", "password": PASSWORD})
    assert location(response) == "/projects/?q=a%20b&x=%C3%A9"


NEXT_VALUES = st.one_of(st.sampled_from(NASTY_NEXT), st.text(max_size=60),
                        st.text(alphabet="/\\\t\n\r%.:@?#&=aeé\u3000\uff0f\x00 ", max_size=30),
                        st.builds(lambda a, b: a + b, st.sampled_from(["/", "//", "/\\", "\\", "/%09/", "%2F"]),
                                  st.text(max_size=30)))


def test_finding4_property_whatever_next_the_location_is_a_path_here(
        app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """Signed in, /login?next=X sends you on to X only when X is a path on this site; never a 5xx."""
    client = app.test_client()
    password_step(client, "researcher")

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(target=NEXT_VALUES)
    def run(target: str) -> None:
        response = client.get("/login", query_string={"next": target})
        assert response.status_code < 500
        if response.status_code in (301, 302, 303, 307, 308):
            assert _same_site(location(response)), (target, location(response))

    run()
    assert signed_in(client)


# --- finding 5: every token expires ---------------------------------------------------------------------------

@pytest.fixture
def bearer(app: Flask, demo_users: dict[str, int]) -> str:
    client = app.test_client()
    password_step(client, "researcher")
    page = client.get("/account/").get_data(as_text=True)
    made = client.post("/account/tokens", data={"csrf_token": csrf_from(page), "name": "script", "days": "30",
                                                "scopes": ["use_account"]}).get_data(as_text=True)
    match = re.search(r'data-testid="new-token">([^<]+)<', made)
    assert match
    return match.group(1)


@pytest.mark.parametrize("days", [None, 0, -1, 367, 10**9, "30", 1.5])
def test_finding5_api_refuses_a_token_without_a_sensible_expiry(app: Flask, bearer: str,
                                                               session_factory: sessionmaker[Session],
                                                               days: Any) -> None:
    client = app.test_client()
    response = client.post("/api/v1/tokens", json={"name": "forever", "days": days},
                           headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 422, response.get_json()
    with session_factory() as s:
        assert s.scalar(select(ApiToken).where(ApiToken.name == "forever")) is None
        assert s.scalar(select(ApiToken).where(ApiToken.expires_at.is_(None))) is None


def test_finding5_api_token_defaults_and_bounds(app: Flask, bearer: str) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {bearer}"}
    default = client.post("/api/v1/tokens", json={"name": "default"}, headers=headers)
    longest = client.post("/api/v1/tokens", json={"name": "longest", "days": 366}, headers=headers)
    assert default.status_code == longest.status_code == 201
    assert default.get_json()["expires_at"] and longest.get_json()["expires_at"]


def test_finding5_the_service_refuses_no_expiry_for_every_caller(session_factory: sessionmaker[Session],
                                                                  demo_users: dict[str, int]) -> None:
    from gateway.errors import ValidationError
    from gateway.identity import tokens

    with unit_of_work(session_factory) as s:
        owner = accounts.find_user(s, "researcher")
        assert owner is not None
        for days in (None, 0, 367):
            with pytest.raises(ValidationError) as refused:
                tokens.create_token(s, "cli:test", owner, "forever", days)  # type: ignore[arg-type]
            assert "days" in refused.value.field_errors


def test_migration_0009_dates_old_never_expiring_tokens_and_drops_reasonless_relaxations(scratch_url: str) -> None:
    """Tokens made without an expiry get one (366 days from creation, at least 30 days from the upgrade);
    policy rows that said "no second factor" without any reason go, so production's default applies."""
    import datetime as dt

    import sqlalchemy as sa
    from alembic import command
    from sqlalchemy import text

    from gateway.db import UTCDateTime, make_engine, utcnow
    from gateway.migrate import alembic_config, upgrade
    from gateway.models import RolePolicy

    upgrade(scratch_url)
    command.downgrade(alembic_config(scratch_url), "0008")
    engine = make_engine(scratch_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (username, display_name, source, password_hash, is_active, is_demo, "
                          "failed_logins, session_version, created_at) VALUES ('old', 'Old', 'local', 'x', "
                          "true, false, 0, 1, CURRENT_TIMESTAMP)"))
        uid = conn.scalar(text("SELECT id FROM users WHERE username = 'old'"))
        old_tokens = sa.table("api_tokens", *(sa.column(c) for c in ("user_id", "name", "prefix", "token_hash",
                                                                       "scopes", "read_only")),
                              sa.column("created_at", UTCDateTime()))
        for prefix, created in (("sde_new", utcnow()), ("sde_ancient", dt.datetime(2020, 1, 1, tzinfo=dt.UTC))):
            conn.execute(sa.insert(old_tokens).values(user_id=uid, name=prefix, prefix=prefix, scopes="[]",
                                                      token_hash=prefix.ljust(64, "0"), created_at=created,
                                                      read_only=False))
        conn.execute(text("INSERT INTO role_policies (role, totp_required) VALUES ('researcher', false), "
                          "('auditor', true)"))
    engine.dispose()
    upgrade(scratch_url)
    engine = make_engine(scratch_url)
    now = utcnow()
    with Session(engine) as s:
        expiry = {t.prefix: t.expires_at for t in s.scalars(select(ApiToken))}
        assert now + dt.timedelta(days=360) < expiry["sde_new"] <= now + dt.timedelta(days=367)
        assert now + dt.timedelta(days=29) < expiry["sde_ancient"] <= now + dt.timedelta(days=31)
        assert {(p.role, p.totp_required) for p in s.scalars(select(RolePolicy))} == {("auditor", True)}
        old = accounts.find_user(s, "old")
        assert old is not None and old.must_change_password is False  # nobody is forced by the upgrade itself
    engine.dispose()


# --- finding 6: a second factor by default in production; relaxing it needs a reason --------------------------

@pytest.fixture
def production_app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings.model_copy(update={"env": "production"}))
    yield application
    application.extensions["sde_engine"].dispose()


@pytest.fixture
def production_users(production_app: Flask) -> sessionmaker[Session]:
    from gateway import demo

    factory = production_app.extensions["sde_sessionmaker"]
    with unit_of_work(factory) as s:
        demo.seed_users(s, "test")  # the demo accounts, made directly: `sde demo` itself refuses production
    return factory


@pytest.mark.parametrize("username", ["researcher", "admin", "auditor", "finance"])
def test_finding6_production_asks_every_role_for_a_second_factor(production_app: Flask,
                                                                production_users: sessionmaker[Session],
                                                                username: str) -> None:
    client = production_app.test_client()
    response = password_step(client, username)
    assert location(response).endswith("/login/verify")  # the emailed link, then the set-up
    assert location(client.get("/home")).endswith("/login/verify")
    assert "without a second factor" not in client.get("/login").get_data(as_text=True)


def test_the_demo_says_it_runs_without_a_second_factor(client: FlaskClient) -> None:
    assert "without a second factor" in client.get("/login").get_data(as_text=True)


def _admin_client(app: Flask) -> FlaskClient:
    from tests.conftest import sign_in_session

    client = app.test_client()
    sign_in_session(client, app.extensions["sde_sessionmaker"], "admin")
    return client


def test_finding6_relaxing_the_policy_needs_a_confirmation_and_a_reason(production_app: Flask,
                                                                       production_users: sessionmaker[Session]
                                                                       ) -> None:
    admin = _admin_client(production_app)
    everyone_but_researchers = ["accreditation_officer", "dac_member", "dac_chair", "lay_member", "output_checker",
                                "finance", "admin", "auditor"]
    first = post(admin, "/admin/security", {"totp_required": everyone_but_researchers})
    html = first.get_data(as_text=True)
    assert first.status_code == 200 and "Confirm" in html and "Researcher" in html
    assert not events(production_users, "security.totp_policy_changed")  # nothing changed yet
    assert location(password_step(production_app.test_client(), "researcher")).endswith("/login/verify")

    no_reason = admin.post("/admin/security/confirm", data={"csrf_token": csrf_from(html),
                                                            "totp_required": everyone_but_researchers,
                                                            "reason": "  "})
    assert no_reason.status_code == 422
    assert not events(production_users, "security.totp_policy_changed")

    done = admin.post("/admin/security/confirm", data={"csrf_token": csrf_from(html),
                                                       "totp_required": everyone_but_researchers,
                                                       "reason": "Pilot cohort has no smartphones; until 1 March"})
    assert done.status_code == 302
    changed = events(production_users, "security.totp_policy_changed")
    assert len(changed) == 1
    assert changed[0].details["relaxed"] == ["researcher"]
    assert changed[0].details["reason"] == "Pilot cohort has no smartphones; until 1 March"
    assert location(password_step(production_app.test_client(), "researcher")).endswith("/home")
    assert location(password_step(production_app.test_client(), "auditor")).endswith("/login/verify")


def test_finding6_tightening_needs_no_reason(app: Flask, session_factory: sessionmaker[Session],
                                             demo_users: dict[str, int]) -> None:
    admin = _admin_client(app)
    response = post(admin, "/admin/security", {"totp_required": ["auditor"]})
    assert response.status_code == 302
    assert events(session_factory, "security.totp_policy_changed")[0].details["tightened"] == ["auditor"]


def test_finding6_the_api_refuses_relaxing_without_a_reason(production_app: Flask,
                                                            production_users: sessionmaker[Session]) -> None:
    from gateway.identity import tokens

    with unit_of_work(production_users) as s:
        admin = accounts.find_user(s, "admin")
        assert admin is not None
        _, plain = tokens.create_token(s, admin, admin, "policy", 1)
    client = production_app.test_client()
    headers = {"Authorization": f"Bearer {plain}"}
    refused = client.put("/api/v1/security/totp-policy", json={"totp_required": ["admin"]}, headers=headers)
    assert refused.status_code == 422
    assert "reason" in refused.get_json()["detail"]["fields"]
    assert "researcher" in client.get("/api/v1/security/totp-policy", headers=headers).get_json()["totp_required"]
    done = client.put("/api/v1/security/totp-policy", json={"totp_required": ["admin"], "reason": "test estate"},
                      headers=headers)
    assert done.status_code == 200
    assert done.get_json()["totp_required"] == ["admin"]


@pytest.mark.ldap
def test_finding6_ldap_accounts_need_a_second_factor_in_production(
        settings: Settings, ldap_settings: Any) -> None:
    application = create_app(settings.model_copy(update={"env": "production", "ldap": ldap_settings}))
    try:
        client = application.test_client()
        assert location(password_step(client, "bob", "bob-ldap-password")).endswith("/login/verify")
        assert not signed_in(client)
        # the link goes to the address the directory holds for the person (its mail attribute, read at sign-in)
        code = newest_code(application.extensions["sde_sessionmaker"], "bob")  # no public.base_url: no link
        assert "b•••@example.nhs.uk" in client.get("/login/verify").get_data(as_text=True)
        assert location(post(client, "/login/verify", {"code": code})).endswith("/login/enrol")
    finally:
        application.extensions["sde_engine"].dispose()


# --- passwords: change on the account page, forced first change, common passwords ------------------------------

def test_password_change_needs_the_current_password_and_ends_other_sessions(
        app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    laptop, phone = app.test_client(), app.test_client()
    password_step(laptop, "researcher")
    password_step(phone, "researcher")
    wrong = post(laptop, "/account/password", {"current_password": "not-it", "password": "violet-harbour-lantern-8",
                                               "password_again": "violet-harbour-lantern-8"})
    assert wrong.status_code == 422
    assert user_row(session_factory, "researcher").failed_logins == 1  # a wrong current password counts too
    done = post(laptop, "/account/password", {"current_password": PASSWORD, "password": "violet-harbour-lantern-8",
                                              "password_again": "violet-harbour-lantern-8"})
    assert done.status_code == 302
    assert signed_in(laptop) and not signed_in(phone)
    assert events(session_factory, "auth.password_changed")
    assert password_step(app.test_client(), "researcher").status_code == 401
    assert location(password_step(app.test_client(), "researcher", "violet-harbour-lantern-8")).endswith("/home")


@pytest.mark.parametrize(("new", "again", "message"), [
    ("short-pw", "short-pw", "at least 12 characters"),
    ("password1234", "password1234", "common"),
    ("qwertyuiop123", "qwertyuiop123", "common"),
    ("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "guess"),
    ("violet-harbour-lantern-8", "violet-harbour-lantern-9", "do not match"),
    (PASSWORD, PASSWORD, "different"),
])
def test_password_change_refusals_keep_the_old_password(app: Flask, session_factory: sessionmaker[Session],
                                                        demo_users: dict[str, int], new: str, again: str,
                                                        message: str) -> None:
    client = app.test_client()
    password_step(client, "researcher")
    response = post(client, "/account/password", {"current_password": PASSWORD, "password": new,
                                                  "password_again": again})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert location(password_step(app.test_client(), "researcher")).endswith("/home")


def test_admin_created_account_must_change_its_password_first(app: Flask, session_factory: sessionmaker[Session],
                                                             demo_users: dict[str, int]) -> None:
    admin = _admin_client(app)
    made = post(admin, "/admin/users/new", {"username": "newstarter", "display_name": "New Starter",
                                            "password": "given-by-the-desk-42", "roles": ["researcher"]})
    assert made.status_code == 302
    client = app.test_client()
    response = password_step(client, "newstarter", "given-by-the-desk-42")
    assert location(response).endswith("/login/new-password")
    assert location(client.get("/projects/")).endswith("/login/new-password")
    same = post(client, "/login/new-password", {"password": "given-by-the-desk-42",
                                                "password_again": "given-by-the-desk-42"})
    assert same.status_code == 422
    done = post(client, "/login/new-password", {"password": "marble-otter-compass-31",
                                                "password_again": "marble-otter-compass-31"})
    assert location(done).endswith("/home")
    assert signed_in(client)
    assert not user_row(session_factory, "newstarter").must_change_password
    again = app.test_client()
    assert location(password_step(again, "newstarter", "marble-otter-compass-31")).endswith("/home")


def test_the_account_page_offers_a_password_change(client: FlaskClient, demo_users: dict[str, int]) -> None:
    password_step(client, "researcher")
    assert "Change your password" in client.get("/account/").get_data(as_text=True)


def test_new_accounts_are_checked_against_common_passwords(app: Flask, session_factory: sessionmaker[Session],
                                                           demo_users: dict[str, int]) -> None:
    admin = _admin_client(app)
    refused = post(admin, "/admin/users/new", {"username": "weakling", "display_name": "Weak Ling",
                                               "password": "password12345", "roles": ["researcher"]})
    assert refused.status_code == 422
    assert "common" in refused.get_data(as_text=True)
    with session_factory() as s:
        assert accounts.find_user(s, "weakling") is None


def test_wrong_codes_sent_in_parallel_each_count(settings: Settings, session_factory: sessionmaker[Session],
                                                 demo_users: dict[str, int], backend: str) -> None:
    """A burst of simultaneous guesses (several workers, several connections) must not lose any increment.

    On PostgreSQL every guess first reads the count, then all write at once (a barrier): without the row lock
    the increments are lost. SQLite takes its write lock when a transaction begins, so there they queue."""
    security = settings.security.model_copy(update={"max_failed_logins": 100})
    _secret, keys = _code_sessions(session_factory, security, "checker2", 6)
    assert _in_parallel(session_factory, backend, keys, "000000", security) == [None] * 6
    assert user_row(session_factory, "checker2").failed_logins == len(keys)


def test_a_half_done_sign_in_can_be_cancelled(app: Flask, client: FlaskClient, totp_user: str,
                                              session_factory: sessionmaker[Session]) -> None:
    password_step(client, "checker1")
    half_done = cookie_of(client)
    page = client.get("/login/code").get_data(as_text=True)
    assert "Cancel and sign out" in page
    assert location(client.post("/logout", data={"csrf_token": csrf_from(page)})).endswith("/login")
    assert location(code_step(client_with(app, half_done), pyotp.TOTP(totp_user).now())).endswith("/login")
    assert events(session_factory, "auth.signed_out")[-1].details["from"] == "code"


def test_the_worker_forgets_sessions_long_over_and_keeps_the_rest(session_factory: sessionmaker[Session],
                                                                  demo_users: dict[str, int]) -> None:
    import datetime as dt

    from gateway.db import utcnow
    from gateway.identity.sessions import S, end_session, open_session
    from gateway.models import WebSession
    from gateway.worker import sweep_sessions

    security = SecuritySettings()
    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, "researcher")
        assert user is not None
        old, _ = open_session(s, user, S.SIGNED_IN, security)
        end_session(s, old, "signed out")
        old.ended_at = utcnow() - dt.timedelta(days=31)
        stale, _ = open_session(s, user, S.CODE, security)
        stale.expires_at = utcnow() - dt.timedelta(days=31)
        recent, _ = open_session(s, user, S.SIGNED_IN, security)
        end_session(s, recent, "signed out")
        live, _ = open_session(s, user, S.SIGNED_IN, security)
        keep = {recent.id, live.id}
    assert sweep_sessions(session_factory) == 2
    with session_factory() as s:
        assert {ws.id for ws in s.scalars(select(WebSession))} == keep


def _code_sessions(session_factory: sessionmaker[Session], security: SecuritySettings, username: str,
                   count: int) -> tuple[str, list[int]]:
    from gateway.identity.sessions import S, open_session

    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, username)
        assert user is not None
        secret = pyotp.random_base32()
        user.totp_secret, user.totp_confirmed_at = secret, user.created_at
        return secret, [open_session(s, user, S.CODE, security)[0].id for _ in range(count)]


def _in_parallel(session_factory: sessionmaker[Session], backend: str, ws_ids: list[int], code: str,
                 security: SecuritySettings | None = None) -> list[Any]:
    """verify_second_factor for each session at once, every request having read the person's row first."""
    import threading

    from gateway.errors import InvalidTransition
    from gateway.identity import signin
    from gateway.models import WebSession

    barrier = threading.Barrier(len(ws_ids)) if backend == "postgresql" else None
    results: list[Any] = []
    errors: list[BaseException] = []

    def attempt(ws_id: int) -> None:
        try:
            with unit_of_work(session_factory) as s:
                ws = s.get(WebSession, ws_id)
                assert ws is not None
                _ = (ws.user.failed_logins, ws.user.totp_last_step)  # read before the others write, as a request
                if barrier is not None:
                    barrier.wait(timeout=30)
                results.append(signin.verify_second_factor(s, security or SECURITY_FOR_RACES, ws, code).state)
        except InvalidTransition:  # the session ended (the lockout) before this request read it
            results.append(None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(k,)) for k in ws_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


SECURITY_FOR_RACES = SecuritySettings(max_failed_logins=3)


def test_wrong_codes_sent_in_parallel_stop_at_the_lockout_limit(session_factory: sessionmaker[Session],
                                                                 demo_users: dict[str, int], backend: str) -> None:
    """Attack: six guesses at once against a limit of three. Each request checked the lock on the row it read at
    its start, so all six codes were tried (and a right one would have signed in) although the third locked the
    account. The row is now locked and read again before a code is looked at: the fourth on finds it locked."""
    _secret, ws_ids = _code_sessions(session_factory, SECURITY_FOR_RACES, "checker2", 6)
    assert _in_parallel(session_factory, backend, ws_ids, "000000") == [None] * 6
    row = user_row(session_factory, "checker2")
    assert row.failed_logins == SECURITY_FOR_RACES.max_failed_logins
    assert row.locked_until is not None


def test_one_code_sent_twice_at_once_signs_in_once(session_factory: sessionmaker[Session],
                                                   demo_users: dict[str, int], backend: str) -> None:
    """Attack: the person's code replayed at the same moment (seen over a shoulder, or relayed) in a second sign-in
    with the stolen password. Both requests read the last used step before either wrote it, so both signed in; the
    row lock now makes the second see the step used and refuse it as a replay."""
    from gateway.identity.sessions import S

    secret, ws_ids = _code_sessions(session_factory, SECURITY_FOR_RACES, "checker2", 2)
    results = _in_parallel(session_factory, backend, ws_ids, pyotp.TOTP(secret).now())
    assert sorted(r is S.SIGNED_IN for r in results) == [False, True]
    assert len(events(session_factory, "auth.totp_replay_refused")) == 1


@postgres_only  # SQLite holds one write lock for the whole transaction: nothing can commit meanwhile
def test_a_right_password_racing_a_lockout_does_not_sign_in(session_factory: sessionmaker[Session],
                                                            demo_users: dict[str, int], backend: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: many passwords at once; the account locks while the right one is being checked. The lock was read
    when the request began, so the right password still signed in (and reset the count and the lock). The row is
    now locked and read again before a session opens."""
    import datetime as dt

    from gateway.db import utcnow
    from gateway.identity import signin

    real = signin.verify_password

    def verify_then_lock(stored: str, password: str) -> bool:
        right = real(stored, password)
        with unit_of_work(session_factory) as other:  # the parallel wrong guesses' lockout commits now
            user = accounts.find_user(other, "researcher")
            assert user is not None
            user.failed_logins, user.locked_until = 5, utcnow() + dt.timedelta(minutes=15)
        return right

    monkeypatch.setattr(signin, "verify_password", verify_then_lock)
    with unit_of_work(session_factory) as s:
        outcome = signin.sign_in_with_password(s, SecuritySettings(), None, "researcher", PASSWORD)
    assert outcome.state is None and outcome.message is not None and "locked" in outcome.message
    assert user_row(session_factory, "researcher").locked_until is not None


@pytest.mark.parametrize("admin_action", ["reset_second_factor", "roles"])
@postgres_only  # SQLite holds one write lock for the whole transaction: nothing can commit meanwhile
def test_an_administrators_session_ending_is_not_lost_to_a_password_change_meanwhile(
        settings: Settings, session_factory: sessionmaker[Session], demo_users: dict[str, int], backend: str,
        admin_action: str) -> None:
    """Attack: whoever holds a person's session changes the password while an administrator resets the person's
    second factor (a lost or stolen phone). The administrator's request read the session version before the change
    raised it and wrote its own +1 over it: the same number the change gave the attacker's session, which so lived
    on. Every change of the version is now one atomic increment in the database."""
    from gateway.identity import signin
    from gateway.identity.sessions import S, live_session, open_session

    security = settings.security
    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, "researcher")
        assert user is not None
        ws, key = open_session(s, user, S.SIGNED_IN, security)
    admin_session = session_factory()
    try:
        target = accounts.find_user(admin_session, "researcher")
        admin = accounts.find_user(admin_session, "admin")
        assert target is not None and admin is not None
        _ = target.session_version, target.roles  # read when the administrator's request began
        with unit_of_work(session_factory) as s:  # the attacker's password change commits meanwhile
            from gateway.models import WebSession

            mine = s.get(WebSession, ws.id)
            assert mine is not None
            assert signin.change_password(s, security, mine, PASSWORD, "copper-meadow-violin-72",
                                          "copper-meadow-violin-72") == {}
        if admin_action == "reset_second_factor":
            accounts.reset_second_factor(admin_session, admin, target)
        else:
            accounts.set_roles(admin_session, admin, target, {"researcher", "output_checker"}, reason="Test.")
        admin_session.commit()
    finally:
        admin_session.close()
    with session_factory() as s:
        assert live_session(s, key) is None
