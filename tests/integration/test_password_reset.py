"""A temporary password set on the server (`sde user set-password`) for someone who forgot theirs: the person must
replace it at their next sign-in, every session they had ends, their second factor stays, and nothing changes when
it is refused. There is no such form on the pages (one administrator could otherwise become anyone: see
accounts.set_temporary_password)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import SecuritySettings
from gateway.db import unit_of_work, utcnow
from gateway.errors import Conflict, ValidationError
from gateway.identity import accounts, signin
from gateway.identity.passwords import verify_password
from gateway.identity.sessions import SignInState, end_session, live_session, open_session
from gateway.models import User, WebSession
from tests.integration.test_security_signin import (
    PASSWORD,
    _admin_client,
    enrol_totp,
    events,
    fresh_code,
    location,
    password_step,
    post,
    signed_in,
    user_row,
)
from tests.support.databases import postgres_only

TEMPORARY = "lantern-meadow-copper-47"


def _reset(factory: sessionmaker[Session], username: str, password: str = TEMPORARY) -> int:
    with unit_of_work(factory) as s:
        target = accounts.find_user(s, username)
        assert target is not None
        return accounts.set_temporary_password(s, "cli:operator", target, password)


def test_the_person_must_replace_a_temporary_password_and_their_sessions_end(
        app: Flask, session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    theirs = app.test_client()
    assert location(password_step(theirs, "researcher")).endswith("/home")
    assert _reset(session_factory, "researcher") == 1
    assert not signed_in(theirs)  # the session open on their device ended with the reset
    assert "/home" not in location(password_step(app.test_client(), "researcher", PASSWORD))  # the old one is gone
    client = app.test_client()
    assert location(password_step(client, "researcher", TEMPORARY)).endswith("/login/new-password")
    assert location(client.get("/projects/")).endswith("/login/new-password")  # nothing before their own password
    kept = post(client, "/login/new-password", {"password": TEMPORARY, "password_again": TEMPORARY})
    assert kept.status_code == 422  # the temporary password cannot be kept
    done = post(client, "/login/new-password", {"password": "harbour-violet-quill-58",
                                                "password_again": "harbour-violet-quill-58"})
    assert location(done).endswith("/home") and signed_in(client)
    assert not user_row(session_factory, "researcher").must_change_password
    [event] = events(session_factory, "user.password_reset")
    assert event.actor_label == "cli:operator" and event.details == {"sessions_ended": 1, "unlocked": False}
    assert TEMPORARY not in json.dumps(event.details)


@pytest.fixture
def checker_secret(app: Flask, demo_users: dict[str, int]) -> str:
    """checker1 with an authenticator set up: its secret."""
    return enrol_totp(app, "checker1")


def test_a_temporary_password_does_not_skip_the_second_factor(app: Flask, session_factory: sessionmaker[Session],
                                                              checker_secret: str) -> None:
    _reset(session_factory, "checker1")
    client = app.test_client()
    assert location(password_step(client, "checker1", TEMPORARY)).endswith("/login/code")
    assert not signed_in(client)
    code = post(client, "/login/code", {"code": fresh_code(checker_secret, session_factory, "checker1")})
    assert location(code).endswith("/login/new-password")


def test_a_half_finished_sign_in_does_not_outlive_the_reset(app: Flask, session_factory: sessionmaker[Session],
                                                            checker_secret: str) -> None:
    """Waiting at the code step with the old password when the reset happens: the code no longer finishes it."""
    client = app.test_client()
    assert location(password_step(client, "checker1")).endswith("/login/code")
    _reset(session_factory, "checker1")
    code = post(client, "/login/code", {"code": fresh_code(checker_secret, session_factory, "checker1")},
                form_page="/login")
    assert not location(code).endswith("/home") and not signed_in(client)


@pytest.mark.parametrize(("password", "message"), [
    ("short-1", "12 characters"),
    ("password12345", "common"),
    ("researcher-and-more-1", "username"),
])
def test_a_refused_temporary_password_changes_nothing(app: Flask, session_factory: sessionmaker[Session],
                                                      demo_users: dict[str, int], password: str,
                                                      message: str) -> None:
    before = user_row(session_factory, "researcher")
    theirs = app.test_client()
    password_step(theirs, "researcher")
    with pytest.raises(ValidationError) as refused:
        _reset(session_factory, "researcher", password)
    assert message in " ".join(refused.value.field_errors["password"])
    after = user_row(session_factory, "researcher")
    assert (after.password_hash, after.must_change_password) == (before.password_hash, before.must_change_password)
    assert signed_in(theirs) and events(session_factory, "user.password_reset") == []


def test_not_for_a_directory_account(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        s.add(User(username="dirperson", display_name="Directory Person", source="ldap"))
    with pytest.raises(Conflict, match="directory"):
        _reset(session_factory, "dirperson")
    assert user_row(session_factory, "dirperson").password_hash is None
    assert events(session_factory, "user.password_reset") == []


def test_a_temporary_password_lifts_a_lock_from_failed_sign_ins(app: Flask, session_factory: sessionmaker[Session],
                                                               demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        person = s.scalar(select(User).where(User.username == "researcher"))
        assert person is not None
        person.failed_logins, person.locked_until = 5, utcnow() + dt.timedelta(minutes=15)
    assert "/login/new-password" not in location(password_step(app.test_client(), "researcher", PASSWORD))
    _reset(session_factory, "researcher")
    assert location(password_step(app.test_client(), "researcher", TEMPORARY)).endswith("/login/new-password")
    [event] = events(session_factory, "user.password_reset")
    assert event.details == {"sessions_ended": 0, "unlocked": True}


def test_the_pages_offer_no_password_reset(app: Flask, demo_users: dict[str, int]) -> None:
    """An administrator who could reset both someone's second factor and their password could become them alone."""
    admin = _admin_client(app)
    page = admin.get(f"/admin/users/{demo_users['checker1']}").get_data(as_text=True)
    assert "Deactivate account" in page  # the account's actions are there
    assert 'type="password"' not in page and "/password" not in page
    assert admin.post(f"/admin/users/{demo_users['checker1']}/password").status_code in (404, 405)


@postgres_only
def test_a_reset_racing_the_persons_own_password_change_ends_every_session(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """The reset reads the account, the person's own change commits meanwhile (a new session version), then a
    sign-in with their old password commits after the reset: the reset locks and re-reads the row, so no increment
    is lost and that session is not live (an attack found in review: it was)."""
    reset = session_factory()
    target = reset.get(User, demo_users["researcher"])  # loaded, as a reset would have it
    assert target is not None
    with unit_of_work(session_factory) as s:  # the person's own password change commits meanwhile
        person = s.get(User, demo_users["researcher"])
        assert person is not None
        person.session_version += 1
    accounts.set_temporary_password(reset, "cli:operator", target, TEMPORARY)  # not yet committed
    with unit_of_work(session_factory) as s:  # a sign-in with the password they had
        person = s.get(User, demo_users["researcher"])
        assert person is not None
        _ws, key = open_session(s, person, SignInState.SIGNED_IN, SecuritySettings(), method="password")
    reset.commit()
    reset.close()
    with session_factory() as s:
        assert live_session(s, key) is None, "a session opened during the reset outlived it"


@postgres_only
def test_the_persons_own_change_read_before_a_reset_does_not_undo_it(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """The person's password change began (their session and account read) before the operator's reset committed:
    the change is refused, and the temporary password the operator gives them is the one in force (it was silently
    overwritten: found in review)."""
    with unit_of_work(session_factory) as s:
        person = s.get(User, demo_users["researcher"])
        assert person is not None
        _ws, key = open_session(s, person, SignInState.SIGNED_IN, SecuritySettings(), method="password")
    change = session_factory()
    ws = live_session(change, key)  # read at the start of the request, as the page does
    assert ws is not None
    _reset(session_factory, "researcher")
    with pytest.raises(Conflict, match="ended meanwhile"):
        signin.change_password(change, SecuritySettings(), ws, PASSWORD, "a-brand-new-passphrase-9",
                               "a-brand-new-passphrase-9")
    change.rollback()
    change.close()
    with session_factory() as s:
        person = s.get(User, demo_users["researcher"])
        assert person is not None and person.must_change_password
        assert verify_password(person.password_hash or "", TEMPORARY)


@postgres_only
@pytest.mark.parametrize("current", [PASSWORD, "not-the-password"])  # a wrong one is the last allowed: the lockout
def test_a_password_change_and_a_sign_in_replacing_a_half_done_one_do_not_deadlock(
        session_factory: sessionmaker[Session], demo_users: dict[str, int], current: str) -> None:
    """A sign-in in another browser ends the half-done sign-in it replaces (that session row locked), then adds its
    own session, whose reference to the account needs a key-share lock on it; the password change meanwhile locks
    the account and waits to end that half-done session. A FOR UPDATE lock on the account blocks the key-share one,
    and the two deadlocked (found in review): the change, and a failure's count, lock it FOR NO KEY UPDATE, as the
    reset does."""
    with unit_of_work(session_factory) as s:
        person = s.get(User, demo_users["researcher"])
        assert person is not None
        _ws, key = open_session(s, person, SignInState.SIGNED_IN, SecuritySettings(), method="password")
        half_done, _ = open_session(s, person, SignInState.CODE, SecuritySettings(), method="password")
    sign_in = session_factory()
    replaced = sign_in.get(WebSession, half_done.id)
    assert replaced is not None
    end_session(sign_in, replaced, "replaced by a new sign-in")  # that row locked until the sign-in commits

    failures: list[BaseException] = []

    def change() -> None:
        with session_factory() as s:
            try:
                ws = live_session(s, key)
                assert ws is not None
                errors = signin.change_password(s, SecuritySettings(max_failed_logins=1), ws, current,
                                                "a-brand-new-passphrase-9", "a-brand-new-passphrase-9")
                assert bool(errors) == (current != PASSWORD), errors
                s.commit()
            except BaseException as exc:  # reported by the test
                failures.append(exc)

    thread = threading.Thread(target=change)
    thread.start()
    with session_factory() as watch:  # until the change waits for the half-done session's row
        for _ in range(200):
            waiting = watch.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND datname = current_database()"))
            watch.rollback()
            if waiting:
                break
            thread.join(0.05)
    person = sign_in.get(User, demo_users["researcher"])
    assert person is not None
    try:
        open_session(sign_in, person, SignInState.SIGNED_IN, SecuritySettings(), method="password")
        sign_in.commit()
    except BaseException as exc:  # reported by the test
        failures.append(exc)
        sign_in.rollback()
    sign_in.close()
    thread.join(30)
    assert not thread.is_alive() and not failures, failures
