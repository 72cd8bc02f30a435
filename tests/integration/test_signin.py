"""Sign-in rules against a real database and a real slapd: lockout, second factor, LDAP roles."""

from __future__ import annotations

import datetime as dt
import time

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.config import LdapSettings, SecuritySettings
from gateway.db import unit_of_work, utcnow
from gateway.identity import accounts, enrolment, signin
from gateway.identity.ldap_directory import LdapDirectory
from gateway.identity.sessions import S, open_session
from gateway.models import AuditEvent, User, WebSession
from tests.support.databases import postgres_only

SECURITY = SecuritySettings(max_failed_logins=3, lockout_minutes=15)


def attempt(factory: sessionmaker[Session], username: str, password: str,
            directory: LdapDirectory | None = None) -> signin.Outcome:
    with unit_of_work(factory) as s:
        return signin.sign_in_with_password(s, SECURITY, directory, username, password)


def actions(factory: sessionmaker[Session]) -> list[str]:
    with factory() as s:
        return [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def enrol_codes(factory: sessionmaker[Session], username: str) -> tuple[str, list[str]]:
    """Set up an authenticator from a signed-in session, as the account page does, after a set-up code (here the
    service desk's, which the test can read) has proved the second channel."""
    with unit_of_work(factory) as s:
        user = accounts.find_user(s, username)
        assert user is not None
        ws, _key = open_session(s, user, S.SIGNED_IN, SECURITY)
        setup_code, _ = enrolment.issue_operator_code(s, "cli:test", user, SECURITY)
        assert signin.verify_enrolment_code(s, SECURITY, ws, setup_code).ok
        secret = signin.enrolment_secret(s, SECURITY, ws)
        codes = signin.confirm_enrolment(s, SECURITY, ws, pyotp.TOTP(secret).now())
        assert codes is not None
    return secret, codes


def enrol(factory: sessionmaker[Session], username: str) -> str:
    return enrol_codes(factory, username)[0]


def second(factory: sessionmaker[Session], username: str, code: str) -> signin.Outcome:
    """The code step of a sign-in that has passed the password."""
    with unit_of_work(factory) as s:
        user = accounts.find_user(s, username)
        assert user is not None
        ws, _key = open_session(s, user, S.CODE, SECURITY)
        return signin.verify_second_factor(s, SECURITY, ws, code)


def test_right_password_signs_in_and_is_audited(session_factory: sessionmaker[Session],
                                                demo_users: dict[str, int]) -> None:
    outcome = attempt(session_factory, "Researcher ", "demo-password")
    assert outcome.state is S.SIGNED_IN
    assert actions(session_factory)[-1] == "auth.signed_in"


def test_lockout_after_repeated_failures_refuses_even_the_right_password(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    for _ in range(3):
        assert attempt(session_factory, "researcher", "wrong-password").state is None
    outcome = attempt(session_factory, "researcher", "demo-password")
    assert outcome.state is None
    assert outcome.message and "locked" in outcome.message
    assert "auth.locked" in actions(session_factory)
    with unit_of_work(session_factory) as s:
        admin = accounts.find_user(s, "admin")
        target = accounts.find_user(s, "researcher")
        assert admin and target
        accounts.unlock(s, admin, target)
    assert attempt(session_factory, "researcher", "demo-password").state is S.SIGNED_IN


def test_unknown_user_fails_with_the_same_message(session_factory: sessionmaker[Session],
                                                  demo_users: dict[str, int]) -> None:
    unknown = attempt(session_factory, "nobody", "whatever")
    wrong = attempt(session_factory, "researcher", "whatever")
    assert unknown.message == wrong.message == signin.GENERIC_FAILURE


def test_deactivated_user_cannot_sign_in(session_factory: sessionmaker[Session],
                                         demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        admin, target = accounts.find_user(s, "admin"), accounts.find_user(s, "researcher2")
        assert admin and target
        accounts.set_active(s, admin, target, False)
    assert attempt(session_factory, "researcher2", "demo-password").state is None


def test_second_factor_required_once_enrolled_and_codes_are_not_replayable(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    secret = enrol(session_factory, "checker1")
    assert attempt(session_factory, "checker1", "demo-password").state is S.CODE
    assert second(session_factory, "checker1", "000000").state is None
    # enrolment used the current step; the next step's code (inside the drift window) is fresh
    fresh = pyotp.TOTP(secret).at(time.time() + 30)
    assert second(session_factory, "checker1", fresh).state is S.SIGNED_IN
    replay = second(session_factory, "checker1", fresh)
    assert replay.state is None
    assert "auth.totp_replay_refused" in actions(session_factory)


def test_recovery_code_works_once(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    _secret, codes = enrol_codes(session_factory, "checker2")
    assert second(session_factory, "checker2", codes[0].lower()).state is S.SIGNED_IN
    assert second(session_factory, "checker2", codes[0]).state is None
    assert second(session_factory, "checker2", codes[1]).state is S.SIGNED_IN


def test_wrong_codes_count_towards_lockout(session_factory: sessionmaker[Session],
                                           demo_users: dict[str, int]) -> None:
    enrol(session_factory, "finance")
    for _ in range(3):
        second(session_factory, "finance", "111111")
    with session_factory() as s:
        user = accounts.find_user(s, "finance")
        assert user and user.locked_until is not None


def test_role_policy_forces_enrolment(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        admin = accounts.find_user(s, "admin")
        assert admin
        accounts.set_totp_required(s, admin, {"auditor"})
    assert attempt(session_factory, "auditor", "demo-password").state is S.VERIFY  # the emailed link first
    assert attempt(session_factory, "researcher", "demo-password").state is S.SIGNED_IN
    assert "security.totp_policy_changed" in actions(session_factory)


@pytest.mark.ldap
def test_ldap_user_signs_in_and_gets_roles_from_groups(session_factory: sessionmaker[Session],
                                                       ldap_settings: LdapSettings) -> None:
    directory = LdapDirectory(ldap_settings)
    outcome = attempt(session_factory, "bob", "bob-ldap-password", directory)
    assert outcome.state is S.SIGNED_IN
    with session_factory() as s:
        bob = s.scalars(select(User).where(User.username == "bob")).one()
        assert bob.source == "ldap" and bob.password_hash is None
        assert bob.roles == {"researcher", "dac_member"}
        assert bob.display_name == "Bob Directory"
    assert {"user.created", "user.roles_changed", "auth.signed_in"} <= set(actions(session_factory))


@pytest.mark.ldap
def test_ldap_wrong_password_and_filter_injection_are_refused(session_factory: sessionmaker[Session],
                                                              ldap_settings: LdapSettings) -> None:
    directory = LdapDirectory(ldap_settings)
    assert attempt(session_factory, "alice", "wrong", directory).state is None
    assert attempt(session_factory, "alice", "", directory).state is None
    for trick in ("*", "a*", "*)(uid=*", "alice)(|(uid=*"):
        assert attempt(session_factory, trick, "alice-ldap-password", directory).state is None
    # a real uid containing '*' matches only itself
    assert attempt(session_factory, "star*user", "star-ldap-password", directory).state is S.SIGNED_IN


@pytest.mark.ldap
def test_ldap_failures_lock_the_local_record(session_factory: sessionmaker[Session],
                                             ldap_settings: LdapSettings) -> None:
    directory = LdapDirectory(ldap_settings)
    assert attempt(session_factory, "alice", "alice-ldap-password", directory).state is S.SIGNED_IN
    for _ in range(3):
        attempt(session_factory, "alice", "nope", directory)
    locked = attempt(session_factory, "alice", "alice-ldap-password", directory)
    assert locked.state is None and locked.message and "locked" in locked.message


@pytest.mark.ldap
def test_group_changes_in_the_directory_follow_at_next_sign_in(session_factory: sessionmaker[Session],
                                                              ldap_settings: LdapSettings) -> None:
    directory = LdapDirectory(ldap_settings)
    attempt(session_factory, "carol", "carol-ldap-password", directory)
    with session_factory() as s:
        assert accounts.find_user(s, "carol").roles == frozenset()  # type: ignore[union-attr]
    mapped = LdapDirectory(ldap_settings.model_copy(update={"group_roles": {}}))
    attempt(session_factory, "bob", "bob-ldap-password", directory)
    attempt(session_factory, "bob", "bob-ldap-password", mapped)
    with session_factory() as s:
        assert accounts.find_user(s, "bob").roles == frozenset()  # type: ignore[union-attr]


def test_unreachable_directory_gives_a_clear_message(session_factory: sessionmaker[Session]) -> None:
    from tests.support.ldap_server import free_port

    directory = LdapDirectory(LdapSettings(url=f"ldap://127.0.0.1:{free_port()}", user_base="ou=people,dc=x",
                                           connect_timeout=1))
    outcome = attempt(session_factory, "alice", "whatever", directory)
    assert outcome.state is None and outcome.message and "directory" in outcome.message


def test_chain_stays_intact_through_sign_in_activity(session_factory: sessionmaker[Session],
                                                     demo_users: dict[str, int]) -> None:
    attempt(session_factory, "researcher", "nope")
    attempt(session_factory, "researcher", "demo-password")
    with session_factory() as s:
        assert audit.verify(s).ok


@postgres_only  # on SQLite a writer holds the whole database from its first statement: no interleaving
def test_a_code_is_used_only_once_even_by_two_sign_ins_at_the_same_moment(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    """Two half-done sign-ins send the same fresh code at once (a phished code relayed, say). The second request
    read the person before the first one committed, and decides after it: it must still see the code as spent."""
    secret = enrol(session_factory, "checker1")
    fresh = pyotp.TOTP(secret).at(time.time() + 30)  # enrolment spent the current step
    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, "checker1")
        assert user is not None
        first_id = open_session(s, user, S.CODE, SECURITY)[0].id
        second_id = open_session(s, user, S.CODE, SECURITY)[0].id
    late = session_factory()
    try:
        late_ws = late.get(WebSession, second_id)
        assert late_ws is not None and late_ws.user.totp_last_step is not None  # read before the first commits
        with unit_of_work(session_factory) as s:
            ws = s.get(WebSession, first_id)
            assert ws is not None
            assert signin.verify_second_factor(s, SECURITY, ws, fresh).state is S.SIGNED_IN
        replay = signin.verify_second_factor(late, SECURITY, late_ws, fresh)
        late.commit()
    finally:
        late.close()
    assert replay.state is None
    assert "auth.totp_replay_refused" in actions(session_factory)


def test_after_a_lock_ends_the_next_wrong_password_locks_again(session_factory: sessionmaker[Session],
                                                              demo_users: dict[str, int]) -> None:
    """signing-in.md: the count is reset only by a complete sign-in (or an unlock), not by the lock running out."""
    for _ in range(3):
        attempt(session_factory, "researcher", "wrong-password")
    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, "researcher")
        assert user is not None and user.locked_until is not None
        user.locked_until = utcnow() - dt.timedelta(seconds=1)  # the lock has run out
    outcome = attempt(session_factory, "researcher", "wrong-password")
    assert outcome.locked and outcome.message and "locked" in outcome.message
    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, "researcher")
        assert user is not None and user.locked_until is not None
        user.locked_until = utcnow() - dt.timedelta(seconds=1)
    assert attempt(session_factory, "researcher", "demo-password").state is S.SIGNED_IN
    with session_factory() as s:
        user = accounts.find_user(s, "researcher")
        assert user is not None and user.failed_logins == 0
