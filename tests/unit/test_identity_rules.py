"""Pure rules of identity: TOTP steps and replay windows, recovery codes, passwords, filters, redirects."""

from __future__ import annotations

import pyotp
import pytest
from hypothesis import given, settings
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


@pytest.mark.parametrize("guessable", ["password1234", "P@ssw0rd12345", "qwertyuiop12", "aaaaaaaaaaaa",
                                       "abcdefghijklmnop", "iloveyou12345", "123456789012", "letmeinletmein",
                                       "a" * 500])
def test_common_and_patterned_passwords_are_refused_however_long(guessable: str) -> None:
    problems = password_problems(guessable, "alice")
    assert problems and "too easy to guess" in problems[-1]


def test_the_persons_own_name_counts_against_the_password() -> None:
    assert password_problems("amaraokafor2026", "researcher", ("Amara Okafor",)) == [
        "Password must not contain your name or email address."]
    assert password_problems("Pure-Okafor-Trail-8", "researcher", ("amara.okafor",))
    assert password_problems("violet-harbour-lantern-8", "researcher", ("Amara Okafor",)) == []


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
    ("/\\evil.example", False), (None, False), ("", False), ("/\t/evil.example", False), ("/\n/evil", False),
    ("/\r/evil", False), ("\\/evil.example", False), ("/\x00", False), ("/\x85/evil", False),
    ("http:/evil.example", False), ("javascript:alert(1)", False),
])
def test_only_same_site_paths_are_followed_after_sign_in(target: str | None, safe: bool) -> None:
    from gateway.web.auth import safe_next

    assert (safe_next(target) is not None) is safe
    if safe:
        assert safe_next(target) == target


def test_odd_characters_in_a_good_path_are_encoded_not_refused() -> None:
    from gateway.web.auth import safe_next

    assert safe_next("/projects/?q=a b&x=\u00e9") == "/projects/?q=a%20b&x=%C3%A9"
    assert safe_next("/\u3000/evil.example") == "/%E3%80%80/evil.example"
    assert safe_next("/\uff0f/evil.example") == "/%EF%BC%8F/evil.example"


def _browser_reading(location: str) -> tuple[str, str]:
    """Scheme and host of the URL a browser would go to from a Location on http://gateway.test/: it drops
    tabs and newlines and reads a backslash as a slash (WHATWG URL parsing)."""
    from urllib.parse import urljoin, urlsplit

    cleaned = "".join(c for c in location if c not in "\t\n\r").replace("\\", "/")
    resolved = urlsplit(urljoin("http://gateway.test/", cleaned.strip("\x00 ")))
    return resolved.scheme, resolved.netloc


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(st.one_of(st.text(max_size=80),
                 st.builds(lambda a, b: a + b, st.sampled_from(["/", "//", "/\\", "\\", "/\t/", "/\n/", " /",
                                                               "/%2F", "/%09/", "/\u3000", "/.//"]),
                           st.text(alphabet=st.characters(codec="utf-8"), max_size=40))))
def test_property_safe_next_only_ever_gives_a_path_on_this_site(target: str) -> None:
    from gateway.web.auth import safe_next

    result = safe_next(target)
    if result is None:
        return
    assert result.isascii() and result.startswith("/") and not result.startswith("//")
    assert not any(ord(c) < 0x21 or c in "\\\x7f" for c in result)
    assert _browser_reading(result) == ("http", "gateway.test")


def test_sign_in_states_each_have_an_owner_and_are_reachable_from_the_password() -> None:
    from gateway.identity.sessions import SIGN_IN_OWNERS, SIGN_IN_TRANSITIONS, STEP_STATES, SignInState

    assert set(SIGN_IN_OWNERS) == set(SignInState)
    reached, frontier = {SignInState.PASSWORD}, [SignInState.PASSWORD]
    while frontier:
        state = frontier.pop()
        for (source, target) in SIGN_IN_TRANSITIONS:
            if source == state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(SignInState)
    assert not [t for t in SIGN_IN_TRANSITIONS if t[0] == SignInState.ENDED]  # final
    # signed in only from a step that proved the last factor; never straight from a half-way state to another's
    into_signed_in = {s for (s, t) in SIGN_IN_TRANSITIONS if t == SignInState.SIGNED_IN}
    assert into_signed_in == {SignInState.PASSWORD, SignInState.CODE, SignInState.ENROL, SignInState.NEW_PASSWORD}
    assert (SignInState.CODE, SignInState.ENROL) not in SIGN_IN_TRANSITIONS
    assert (SignInState.ENROL, SignInState.CODE) not in SIGN_IN_TRANSITIONS
    assert (SignInState.NEW_PASSWORD, SignInState.CODE) not in SIGN_IN_TRANSITIONS
    assert all((s, SignInState.ENDED) in SIGN_IN_TRANSITIONS for s in STEP_STATES | {SignInState.SIGNED_IN})


def test_a_step_out_of_order_is_refused_by_the_table() -> None:
    from gateway.errors import InvalidTransition
    from gateway.identity.sessions import SIGN_IN_TRANSITIONS, SignInState
    from projects.workflow import check_move

    for source in SignInState:
        for target in SignInState:
            if (source, target) in SIGN_IN_TRANSITIONS:
                check_move(SIGN_IN_TRANSITIONS, source.value, target, "A sign-in")
            else:
                with pytest.raises(InvalidTransition):
                    check_move(SIGN_IN_TRANSITIONS, source.value, target, "A sign-in")
