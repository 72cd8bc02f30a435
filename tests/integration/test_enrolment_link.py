"""Setting up an authenticator needs proof of a second channel: a one-time link emailed to the account's address,
followed in the browser session that asked for it (or a code from the service desk).

Before, the enrolment step came straight after the password: anyone with the password alone (phished, a temporary
password intercepted, any account after an administrator reset its second factor) set up their own authenticator
and owned the account. Every attack here goes through the real pages, as an attacker would.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from gateway.app import create_app
from gateway.config import PublicSettings, SecuritySettings, Settings
from gateway.db import unit_of_work, utcnow
from gateway.identity import accounts
from gateway.models import ApiToken, User
from gateway.outbox import OutboxMessage
from tests.integration.test_pages import csrf_from
from tests.integration.test_security_signin import (
    PASSWORD,
    any_token,
    events,
    location,
    password_step,
    post,
    signed_in,
    user_row,
)
from tests.support.enrolment_mail import CODE_RE, follow, mails_to, newest_code, newest_link


@pytest.fixture
def production_app(settings: Settings) -> Iterator[Flask]:
    """Production: every role needs a second factor, so the password leads to the set-up (now: the link first)."""
    application = create_app(settings.model_copy(update={
        "env": "production", "security": SecuritySettings(max_failed_logins=5, enrolment_links_per_hour=3),
        "public": PublicSettings(base_url="https://sde.example.org")}))
    yield application
    application.extensions["sde_engine"].dispose()


@pytest.fixture
def factory(production_app: Flask) -> sessionmaker[Session]:
    from gateway import demo

    made: sessionmaker[Session] = production_app.extensions["sde_sessionmaker"]
    with unit_of_work(made) as s:
        demo.seed_users(s, "test")  # the demo accounts, made directly: `sde demo` itself refuses production
    return made


def enter_code(client: FlaskClient, url: str, code: str) -> TestResponse:
    return client.post(url, data={"csrf_token": any_token(client), "code": code})


def secret_on(html: str) -> str | None:
    found = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', html)
    return found.group(1) if found else None


def try_to_enrol(client: FlaskClient, page_url: str) -> None:
    """What an attacker does with the pages: take any secret offered and confirm a code from it."""
    page = client.get(page_url)
    secret = secret_on(page.get_data(as_text=True)) if page.status_code == 200 else None
    code = pyotp.TOTP(secret).now() if secret else "123456"
    client.post(page_url, data={"csrf_token": any_token(client), "code": code})


def enrolled(factory: sessionmaker[Session], username: str) -> bool:
    return user_row(factory, username).totp_confirmed_at is not None


# --- the hole: the password alone set up an authenticator --------------------------------------------------------

def test_the_password_alone_cannot_set_up_an_authenticator(production_app: Flask,
                                                           factory: sessionmaker[Session]) -> None:
    attacker = production_app.test_client()
    response = password_step(attacker, "checker1")
    for page in ("/login/enrol", "/account/second-factor"):
        try_to_enrol(attacker, page)
    assert not enrolled(factory, "checker1"), "the password alone set up the attacker's authenticator"
    assert not signed_in(attacker)
    assert location(response).endswith("/login/verify")  # the link first, not the set-up page
    assert location(attacker.get("/login/enrol")).endswith("/login/verify")
    assert "totp-secret" not in attacker.get("/login/verify").get_data(as_text=True)


def test_the_password_alone_cannot_set_up_one_from_the_account_page(app: Flask, session_factory: sessionmaker[Session],
                                                                    demo_users: dict[str, int]) -> None:
    """The demo's roles need no second factor, so the password signs in; binding an authenticator (which would lock
    the owner out for good) still needs the email."""
    attacker = app.test_client()
    assert location(password_step(attacker, "researcher")).endswith("/home")
    try_to_enrol(attacker, "/account/second-factor")
    assert not enrolled(session_factory, "researcher"), "the password alone set up the attacker's authenticator"
    page = attacker.get("/account/second-factor").get_data(as_text=True)
    assert secret_on(page) is None and "Check your email" in page


# --- the link: bound to the session, once, newest only, until it expires --------------------------------------------

def test_the_link_sets_up_the_authenticator_in_the_browser_that_asked(production_app: Flask,
                                                                      factory: sessionmaker[Session]) -> None:
    client = production_app.test_client()
    password_step(client, "checker1")
    page = client.get("/login/verify").get_data(as_text=True)
    assert "c•••@demo.londonsde.invalid" in page
    assert "checker1@" not in page  # the address is only hinted at
    assert location(follow(client, newest_link(factory, "checker1"))).endswith("/login/enrol")
    secret = secret_on(client.get("/login/enrol").get_data(as_text=True))
    assert secret
    done = client.post("/login/enrol", data={"csrf_token": any_token(client), "code": pyotp.TOTP(secret).now()})
    assert "Save your recovery codes" in done.get_data(as_text=True)
    assert enrolled(factory, "checker1") and signed_in(client)
    assert events(factory, "auth.signed_in")[-1].details["method"] == "password+email+totp_enrolment"
    assert [e.action for e in events(factory, "auth.enrolment_link_sent")] == ["auth.enrolment_link_sent"]
    assert events(factory, "auth.enrolment_code_used")[-1].details["channel"] == "email"
    from gateway.models import EnrolmentCode

    plain = newest_code(factory, "checker1").replace("-", "")
    with factory() as s:  # only a hash is kept
        row = s.scalars(select(EnrolmentCode)).one()
        assert row.used_at is not None and len(row.code_hash) == 64 and plain not in row.code_hash


def test_the_link_from_another_browser_session_is_refused(production_app: Flask,
                                                          factory: sessionmaker[Session]) -> None:
    """The attacker has the password and a copy of the owner's email (a leaked mailbox): the link was sent to the
    owner's sign-in, so it does nothing in the attacker's own."""
    attacker, owner, stranger = (production_app.test_client() for _ in range(3))
    password_step(attacker, "checker1")
    password_step(owner, "checker1")  # the newest link: the attacker's own stops working
    link = newest_link(factory, "checker1")
    assert location(follow(stranger, link)).endswith("/login")  # no sign-in at all: nothing to bind to
    refused = follow(attacker, link)
    assert refused.status_code == 401
    assert "does not work here" in refused.get_data(as_text=True)
    assert location(attacker.get("/login/enrol")).endswith("/login/verify")
    try_to_enrol(attacker, "/login/enrol")
    assert not enrolled(factory, "checker1")
    reasons = [e.details["reason"] for e in events(factory, "auth.enrolment_code_refused")]
    assert reasons == ["sent to another browser session"]
    assert user_row(factory, "checker1").failed_logins == 1  # counted towards the lockout, like a wrong code
    assert location(follow(owner, link)).endswith("/login/enrol")  # still the owner's


def test_a_link_works_once(production_app: Flask, factory: sessionmaker[Session]) -> None:
    client = production_app.test_client()
    password_step(client, "checker1")
    link = newest_link(factory, "checker1")
    assert location(follow(client, link)).endswith("/login/enrol")
    post(client, "/logout", {}, form_page="/login/enrol")
    again = production_app.test_client()
    password_step(again, "checker1")
    code = CODE_RE.search(mails_to(factory, "checker1")[0]).group(1)  # type: ignore[union-attr]
    assert enter_code(again, "/login/verify", code).status_code == 401
    assert events(factory, "auth.enrolment_code_refused")[-1].details["reason"] == "already used"
    assert not enrolled(factory, "checker1")


def test_an_expired_link_is_refused(production_app: Flask, factory: sessionmaker[Session]) -> None:
    client = production_app.test_client()
    password_step(client, "checker1")
    from gateway.models import EnrolmentCode

    link = newest_link(factory, "checker1")
    with unit_of_work(factory) as s:
        s.execute(update(EnrolmentCode).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert follow(client, link).status_code == 401
    assert events(factory, "auth.enrolment_code_refused")[-1].details["reason"] == "expired"
    assert location(client.get("/login/enrol")).endswith("/login/verify")


def test_a_new_link_supersedes_the_older_ones(production_app: Flask, factory: sessionmaker[Session]) -> None:
    client = production_app.test_client()
    password_step(client, "checker1")
    first = newest_link(factory, "checker1")
    post(client, "/login/verify/send", {}, form_page="/login/verify")
    second = newest_link(factory, "checker1")
    assert first != second
    assert follow(client, first).status_code == 401
    assert events(factory, "auth.enrolment_code_refused")[-1].details["reason"] == "a newer code was issued"
    assert location(follow(client, second)).endswith("/login/enrol")


def test_sending_links_is_rate_limited_per_account(production_app: Flask, factory: sessionmaker[Session]) -> None:
    """Three an hour here (enrolment_links_per_hour): a fourth sign-in or a fourth 'send' mails nothing."""
    clients = [production_app.test_client() for _ in range(2)]
    for client in clients:
        password_step(client, "checker1")
    post(clients[-1], "/login/verify/send", {}, form_page="/login/verify")
    assert len(mails_to(factory, "checker1")) == 3
    refused = post(clients[-1], "/login/verify/send", {}, form_page="/login/verify")
    assert location(refused).endswith("/login/verify")
    assert "Too many links" in clients[-1].get("/login/verify").get_data(as_text=True)
    password_step(production_app.test_client(), "checker1")
    assert len(mails_to(factory, "checker1")) == 3
    assert [e.details["reason"] for e in events(factory, "auth.enrolment_link_refused")] == [
        "too many links this hour"] * 2


def test_wrong_codes_count_towards_the_lockout(production_app: Flask, factory: sessionmaker[Session]) -> None:
    client = production_app.test_client()
    password_step(client, "checker1")
    for n in range(4):
        assert enter_code(client, "/login/verify", f"AAAA-BBBB-CCCC-{n:04d}").status_code == 401
    locked = enter_code(client, "/login/verify", "AAAA-BBBB-CCCC-DDDD")
    assert location(locked).endswith("/login")
    assert user_row(factory, "checker1").locked_until is not None


def test_a_code_issued_before_a_password_reset_is_refused(production_app: Flask,
                                                          factory: sessionmaker[Session]) -> None:
    """The service desk's code, then the password is reset: the code was for the sessions before the reset."""
    from gateway.identity.enrolment import issue_operator_code

    with unit_of_work(factory) as s:
        user = accounts.find_user(s, "checker1")
        assert user is not None
        code, _ = issue_operator_code(s, "cli:test", user, SecuritySettings())
        accounts.set_temporary_password(s, "cli:test", user, "a-fresh-temporary-pass-61")
    client = production_app.test_client()
    assert location(password_step(client, "checker1", "a-fresh-temporary-pass-61")).endswith("/login/verify")
    assert enter_code(client, "/login/verify", code).status_code == 401
    assert events(factory, "auth.enrolment_code_refused")[-1].details["reason"] == (
        "issued before a password change, reset or lockout")


def test_the_link_stops_working_when_the_password_changes(app: Flask, session_factory: sessionmaker[Session],
                                                          demo_users: dict[str, int]) -> None:
    """Signed in on the account page, a link is asked for; the password then changes elsewhere: the session ends and
    the link with it."""
    client = app.test_client()
    password_step(client, "researcher")
    post(client, "/account/second-factor/send", {}, form_page="/account/second-factor")
    link = newest_link(session_factory, "researcher")
    assert urlsplit(link).path == "/account/second-factor"
    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, "researcher")
        assert user is not None
        accounts.set_temporary_password(s, "cli:test", user, "a-fresh-temporary-pass-61")
    assert location(follow(client, link)).startswith("/login")
    password_step(client, "researcher", "a-fresh-temporary-pass-61")
    assert not enrolled(session_factory, "researcher")


def test_the_account_page_sets_up_an_authenticator_after_the_link(app: Flask, session_factory: sessionmaker[Session],
                                                                  demo_users: dict[str, int]) -> None:
    client = app.test_client()
    password_step(client, "researcher")
    post(client, "/account/second-factor/send", {}, form_page="/account/second-factor")
    assert location(follow(client, newest_link(session_factory, "researcher"))).endswith("/account/second-factor")
    secret = secret_on(client.get("/account/second-factor").get_data(as_text=True))
    assert secret
    done = client.post("/account/second-factor", data={"csrf_token": any_token(client),
                                                        "code": pyotp.TOTP(secret).now()})
    assert "Save your recovery codes" in done.get_data(as_text=True)
    assert enrolled(session_factory, "researcher")
    # the proof was spent on that one authenticator: it is not left lying on the session
    with session_factory() as s:
        user = accounts.find_user(s, "researcher")
        assert user is not None
    assert client.get("/account/second-factor").status_code == 302


# --- no email address: the service desk's code --------------------------------------------------------------------

def test_an_account_without_email_is_told_to_ask_the_service_desk(production_app: Flask,
                                                                  factory: sessionmaker[Session]) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    with unit_of_work(factory) as s:
        user = accounts.find_user(s, "checker2")
        assert user is not None
        user.email = None
    client = production_app.test_client()
    password_step(client, "checker2")
    page = client.get("/login/verify").get_data(as_text=True)
    assert "Contact the service desk" in page and "Send me a link" not in page
    with factory() as s:
        assert not s.scalars(select(OutboxMessage)).all()
    assert [e.details["reason"] for e in events(factory, "auth.enrolment_link_refused")] == ["no email address"]

    settings: Settings = production_app.extensions["sde_settings"]
    result = CliRunner().invoke(main, ["user", "enrolment-code", "checker2"],
                                env={"SDE_DATABASE_URL": settings.resolved_database_url,
                                     "SDE_INSTANCE_DIR": str(settings.instance_dir), "SDE_ENV": "production",
                                     "SDE_SECRET_KEY": "x" * 40})
    assert result.exit_code == 0, result.output
    code = CODE_RE.search(result.output).group(1)  # type: ignore[union-attr]
    issued = events(factory, "user.enrolment_code_issued")
    assert len(issued) == 1 and issued[0].actor_label.startswith("cli:")
    assert location(enter_code(client, "/login/verify", code)).endswith("/login/enrol")
    secret = secret_on(client.get("/login/enrol").get_data(as_text=True))
    assert secret
    client.post("/login/enrol", data={"csrf_token": any_token(client), "code": pyotp.TOTP(secret).now()})
    assert enrolled(factory, "checker2")
    assert events(factory, "auth.signed_in")[-1].details["method"] == "password+operator_code+totp_enrolment"


# --- state skipping -----------------------------------------------------------------------------------------------

def test_nothing_is_reachable_before_the_link_tokens_included(production_app: Flask,
                                                              factory: sessionmaker[Session]) -> None:
    client = production_app.test_client()
    password_step(client, "admin")
    for url in ("/home", "/account/", "/admin/users", "/login/enrol", "/login/code", "/login/new-password"):
        assert location(client.get(url)).endswith("/login/verify"), url
    made = client.post("/account/tokens", data={"csrf_token": any_token(client), "name": "x", "days": "30"})
    assert location(made).endswith("/login/verify")
    with factory() as s:
        assert not s.scalars(select(ApiToken)).all()
    assert client.get("/api/v1/me").status_code == 401  # the half-done session's cookie is no API credential


def test_the_emailed_code_is_removed_from_the_outbox_once_delivered(production_app: Flask,
                                                                    factory: sessionmaker[Session]) -> None:
    from gateway import outbox

    password_step(production_app.test_client(), "checker1")
    code = newest_code(factory, "checker1")
    outbox.process(outbox.WorkerContext(settings=production_app.extensions["sde_settings"], factory=factory))
    with factory() as s:
        bodies = [m.payload["body"] for m in s.scalars(select(OutboxMessage))]
    assert bodies == [outbox.SCRUBBED_BODY]
    settings: Settings = production_app.extensions["sde_settings"]
    delivered = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                 for p in (settings.instance_dir / "mail").glob("*.eml")]
    assert len(delivered) == 1 and code in delivered[0].get_content()  # type: ignore[attr-defined]


def test_in_production_the_link_uses_only_the_configured_address(settings: Settings) -> None:
    """Without ``public.base_url`` a production email carries the code alone: a link built from the request's Host
    header would let an attacker with the password send the owner a link to their own site, and read the code."""
    from gateway import demo

    application = create_app(settings.model_copy(update={"env": "production"}))
    try:
        made = application.extensions["sde_sessionmaker"]
        with unit_of_work(made) as s:
            demo.seed_users(s, "test")
        client = application.test_client()
        forged = {"Host": "evil.example"}
        token = csrf_from(client.get("/login", headers=forged).get_data(as_text=True))
        response = client.post("/login", data={"csrf_token": token, "username": "checker1", "password": PASSWORD},
                               headers=forged)
        assert location(response).endswith("/login/verify")
        body = mails_to(made, "checker1")[-1]
        assert "evil.example" not in body and "http" not in body
        assert CODE_RE.search(body)
    finally:
        application.extensions["sde_engine"].dispose()


def test_the_users_email_is_where_the_link_goes(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        assert s.scalar(select(User.email).where(User.username == "checker1")) == "checker1@demo.londonsde.invalid"


def test_after_an_administrators_reset_the_password_alone_sets_up_nothing(production_app: Flask,
                                                                          factory: sessionmaker[Session]) -> None:
    """The owner had an app; an administrator reset it (a lost phone). Whoever holds the password is sent to the link
    step, and the link the owner used before the reset does not work again."""
    owner = production_app.test_client()
    password_step(owner, "checker1")
    before_reset = newest_link(factory, "checker1")
    assert location(follow(owner, before_reset)).endswith("/login/enrol")
    secret = secret_on(owner.get("/login/enrol").get_data(as_text=True))
    assert secret
    owner.post("/login/enrol", data={"csrf_token": any_token(owner), "code": pyotp.TOTP(secret).now()})
    assert enrolled(factory, "checker1")
    attacker = production_app.test_client()
    password_step(attacker, "checker1")  # waiting for the app's code now: no link is sent
    stale = newest_link(factory, "checker1")
    assert stale == before_reset
    with unit_of_work(factory) as s:
        admin, target = accounts.find_user(s, "admin"), accounts.find_user(s, "checker1")
        assert admin is not None and target is not None
        accounts.reset_second_factor(s, admin, target)
    assert not signed_in(owner) and not enrolled(factory, "checker1")
    assert location(password_step(attacker, "checker1")).endswith("/login/verify")
    try_to_enrol(attacker, "/login/enrol")
    assert follow(attacker, stale).status_code == 401
    assert not enrolled(factory, "checker1")
    assert location(follow(attacker, newest_link(factory, "checker1"))).endswith("/login/enrol")  # only with the email


def test_migration_0025_ends_sign_ins_waiting_at_the_old_enrolment_step(scratch_url: str) -> None:
    """Sign-ins that reached the set-up page with the password alone before the upgrade must not finish there."""
    from alembic import command
    from sqlalchemy import text

    from gateway.db import make_engine
    from gateway.migrate import alembic_config, upgrade
    from gateway.models import WebSession

    upgrade(scratch_url)
    command.downgrade(alembic_config(scratch_url), "0024")
    engine = make_engine(scratch_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (username, display_name, source, password_hash, is_active, is_demo, "
                          "failed_logins, session_version, created_at, must_change_password) VALUES ('old', 'Old', "
                          "'local', 'x', true, false, 0, 1, CURRENT_TIMESTAMP, false)"))
        uid = conn.scalar(text("SELECT id FROM users WHERE username = 'old'"))
        for key, state in (("a" * 64, "enrol"), ("b" * 64, "code")):
            conn.execute(text("INSERT INTO web_sessions (user_id, key_hash, state, generation, created_at, expires_at, "
                              "pending_totp_secret) VALUES (:uid, :key, :state, 1, CURRENT_TIMESTAMP, "
                              "CURRENT_TIMESTAMP, 'ABCDEFGHIJKLMNOP')"), {"uid": uid, "key": key, "state": state})
    engine.dispose()
    upgrade(scratch_url)
    engine = make_engine(scratch_url)
    with Session(engine) as s:
        rows = {ws.state: ws for ws in s.scalars(select(WebSession))}
        assert set(rows) == {"ended", "code"}
        assert rows["ended"].pending_totp_secret is None and rows["ended"].ended_at is not None
        assert rows["code"].ended_at is None
    engine.dispose()
