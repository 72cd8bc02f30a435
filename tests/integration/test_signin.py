"""Sign-in rules against a real database and a real slapd: lockout, second factor, LDAP roles."""

from __future__ import annotations

import time

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import audit
from gateway.config import LdapSettings, SecuritySettings
from gateway.db import unit_of_work
from gateway.identity import accounts, signin
from gateway.identity.ldap_directory import LdapDirectory
from gateway.identity.signin import Next
from gateway.models import AuditEvent, User

SECURITY = SecuritySettings(max_failed_logins=3, lockout_minutes=15)


def attempt(factory: sessionmaker[Session], username: str, password: str,
            directory: LdapDirectory | None = None) -> signin.Outcome:
    with unit_of_work(factory) as s:
        return signin.sign_in_with_password(s, SECURITY, directory, username, password)


def actions(factory: sessionmaker[Session]) -> list[str]:
    with factory() as s:
        return [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def enrol(factory: sessionmaker[Session], username: str) -> str:
    with unit_of_work(factory) as s:
        user = accounts.find_user(s, username)
        assert user is not None
        secret = signin.start_enrolment(user)
        codes = signin.confirm_enrolment(s, SECURITY, user, secret, pyotp.TOTP(secret).now())
        assert codes is not None
    return secret


def second(factory: sessionmaker[Session], username: str, code: str) -> signin.Outcome:
    with unit_of_work(factory) as s:
        user = accounts.find_user(s, username)
        assert user is not None
        return signin.verify_second_factor(s, SECURITY, user, code)


def test_right_password_signs_in_and_is_audited(session_factory: sessionmaker[Session],
                                                demo_users: dict[str, int]) -> None:
    outcome = attempt(session_factory, "Researcher ", "demo-password")
    assert outcome.next is Next.DONE
    assert actions(session_factory)[-1] == "auth.signed_in"


def test_lockout_after_repeated_failures_refuses_even_the_right_password(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    for _ in range(3):
        assert attempt(session_factory, "researcher", "wrong-password").next is Next.FAILED
    outcome = attempt(session_factory, "researcher", "demo-password")
    assert outcome.next is Next.FAILED
    assert outcome.message and "locked" in outcome.message
    assert "auth.locked" in actions(session_factory)
    with unit_of_work(session_factory) as s:
        admin = accounts.find_user(s, "admin")
        target = accounts.find_user(s, "researcher")
        assert admin and target
        accounts.unlock(s, admin, target)
    assert attempt(session_factory, "researcher", "demo-password").next is Next.DONE


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
    assert attempt(session_factory, "researcher2", "demo-password").next is Next.FAILED


def test_second_factor_required_once_enrolled_and_codes_are_not_replayable(
        session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    secret = enrol(session_factory, "checker1")
    assert attempt(session_factory, "checker1", "demo-password").next is Next.SECOND_FACTOR
    assert second(session_factory, "checker1", "000000").next is Next.FAILED
    # enrolment used the current step; the next step's code (inside the drift window) is fresh
    fresh = pyotp.TOTP(secret).at(time.time() + 30)
    assert second(session_factory, "checker1", fresh).next is Next.DONE
    replay = second(session_factory, "checker1", fresh)
    assert replay.next is Next.FAILED
    assert "auth.totp_replay_refused" in actions(session_factory)


def test_recovery_code_works_once(session_factory: sessionmaker[Session], demo_users: dict[str, int]) -> None:
    with unit_of_work(session_factory) as s:
        user = accounts.find_user(s, "checker2")
        assert user
        secret = signin.start_enrolment(user)
        codes = signin.confirm_enrolment(s, SECURITY, user, secret, pyotp.TOTP(secret).now())
    assert codes
    assert second(session_factory, "checker2", codes[0].lower()).next is Next.DONE
    assert second(session_factory, "checker2", codes[0]).next is Next.FAILED
    assert second(session_factory, "checker2", codes[1]).next is Next.DONE


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
    assert attempt(session_factory, "auditor", "demo-password").next is Next.ENROL
    assert attempt(session_factory, "researcher", "demo-password").next is Next.DONE
    assert "security.totp_policy_changed" in actions(session_factory)


@pytest.mark.ldap
def test_ldap_user_signs_in_and_gets_roles_from_groups(session_factory: sessionmaker[Session],
                                                       ldap_settings: LdapSettings) -> None:
    directory = LdapDirectory(ldap_settings)
    outcome = attempt(session_factory, "bob", "bob-ldap-password", directory)
    assert outcome.next is Next.DONE
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
    assert attempt(session_factory, "alice", "wrong", directory).next is Next.FAILED
    assert attempt(session_factory, "alice", "", directory).next is Next.FAILED
    for trick in ("*", "a*", "*)(uid=*", "alice)(|(uid=*"):
        assert attempt(session_factory, trick, "alice-ldap-password", directory).next is Next.FAILED
    # a real uid containing '*' matches only itself
    assert attempt(session_factory, "star*user", "star-ldap-password", directory).next is Next.DONE


@pytest.mark.ldap
def test_ldap_failures_lock_the_local_record(session_factory: sessionmaker[Session],
                                             ldap_settings: LdapSettings) -> None:
    directory = LdapDirectory(ldap_settings)
    assert attempt(session_factory, "alice", "alice-ldap-password", directory).next is Next.DONE
    for _ in range(3):
        attempt(session_factory, "alice", "nope", directory)
    locked = attempt(session_factory, "alice", "alice-ldap-password", directory)
    assert locked.next is Next.FAILED and locked.message and "locked" in locked.message


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
    assert outcome.next is Next.FAILED and outcome.message and "directory" in outcome.message


def test_chain_stays_intact_through_sign_in_activity(session_factory: sessionmaker[Session],
                                                     demo_users: dict[str, int]) -> None:
    attempt(session_factory, "researcher", "nope")
    attempt(session_factory, "researcher", "demo-password")
    with session_factory() as s:
        assert audit.verify(s).ok
