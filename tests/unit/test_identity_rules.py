"""Pure rules of identity: TOTP steps and replay windows, recovery codes, passwords, filters, redirects."""

from __future__ import annotations

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import LdapSettings
from gateway.identity import totp
from gateway.identity.ldap_directory import LdapDirectory
from gateway.identity.passwords import hash_password, password_problems, verify_password


def test_code_from_current_step_matches_that_step() -> None:
    secret = totp.new_secret()
    now = 1_800_000_000.0
    code = pyotp.TOTP(secret).at(now)
    assert totp.matching_step(secret, code, at=now) == int(now // 30)


def test_codes_one_step_either_side_are_accepted_two_steps_are_not() -> None:
    secret = totp.new_secret()
    now = 1_800_000_000.0
    gen = pyotp.TOTP(secret)
    assert totp.matching_step(secret, gen.at(now - 30), at=now) == int(now // 30) - 1
    assert totp.matching_step(secret, gen.at(now + 30), at=now) == int(now // 30) + 1
    assert totp.matching_step(secret, gen.at(now - 60), at=now) is None
    assert totp.matching_step(secret, gen.at(now + 60), at=now) is None


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes_never_match(bad: str) -> None:
    assert totp.matching_step(totp.new_secret(), bad) is None


def test_recovery_codes_are_unique_and_normalise_for_lookup() -> None:
    codes = totp.new_recovery_codes(10)
    assert len(set(codes)) == 10
    for code in codes:
        assert len(code) == 14 and code.count("-") == 2
        assert totp.hash_recovery_code(code.lower().replace("-", " ")) == totp.hash_recovery_code(code)


def test_password_rules_are_length_and_not_the_username() -> None:
    assert password_problems("short", "alice") == ["Password must be at least 12 characters."]
    assert password_problems("alice-is-my-password", "alice") == ["Password must not contain the username."]
    assert password_problems("correct horse battery", "alice") == []


def test_argon2_hash_verifies_only_the_right_password() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "correct horse batterx")
    assert not verify_password("not a hash", "anything")


def _directory() -> LdapDirectory:
    return LdapDirectory(LdapSettings(url="ldap://127.0.0.1:1", user_base="ou=people,dc=x"))


@given(st.text(min_size=1, max_size=40))
def test_user_filter_escapes_every_special_character(username: str) -> None:
    filt = _directory().user_filter(username)
    value = filt.split("(uid=", 1)[1][:-2]
    # no raw filter metacharacter survives inside the value
    for char in "*()\\\x00":
        assert char not in value.replace("\\2a", "").replace("\\28", "").replace("\\29", "") \
            .replace("\\5c", "").replace("\\00", "")


def test_injection_attempt_is_a_literal() -> None:
    assert _directory().user_filter("*)(uid=*") == "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"


@pytest.mark.parametrize(("target", "safe"), [
    ("/audit/?actor=x", True), ("//evil.example/", False), ("https://evil.example/", False),
    ("/\\evil.example", False), (None, False), ("", False),
])
def test_only_same_site_paths_are_followed_after_sign_in(target: str | None, safe: bool) -> None:
    from gateway.app import create_app
    from gateway.config import Settings
    from gateway.web.auth import safe_next

    app = create_app(Settings(env="test", database_url="sqlite://", secret_key="x"))
    with app.test_request_context():
        assert (safe_next(target) == target) is safe
