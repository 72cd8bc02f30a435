"""Password hashing with Argon2id (argon2-cffi's defaults follow RFC 9106's recommendations), and the rules a
new password must meet: a minimum length and not easy to guess.

"Easy to guess" is judged by zxcvbn (Dropbox's estimator, MIT licence): it carries a list of about 30,000 of the
most common passwords (from leaked-password corpora) plus English words, names and keyboard patterns, and
sees through the variations people reach for to pass a length rule ("password1234", "P@ssw0rd12345",
"qwertyuiop12", "aaaaaaaaaaaa"). A plain top-10,000 list would miss nearly all of those, because almost every
password on such a list is shorter than our minimum. No composition rules (NCSC guidance): length plus a
deny-list of the guessable.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

_hasher = PasswordHasher()

MIN_LENGTH = 12
MAX_LENGTH = 1024
# zxcvbn's score runs 0-4; 3 means "safely unguessable" against an offline attack on a slow hash
# (about 10^8 guesses or more), which Argon2 and the sign-in lockout make far slower still.
MIN_SCORE = 3
_ESTIMATE_CHARS = 72  # zxcvbn refuses longer input; a long password is judged by its start


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problems(password: str, username: str, other_words: tuple[str, ...] = ()) -> list[str]:
    """Plain-English reasons a new password is refused; empty when it is acceptable.

    ``other_words`` (the person's name, email): any part of five letters or more may not appear in it.
    """
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Password must be at least {MIN_LENGTH} characters.")
    elif len(password) > MAX_LENGTH:
        problems.append(f"Password must be at most {MAX_LENGTH} characters.")
    if username and username.lower() in password.lower():
        problems.append("Password must not contain the username.")
    names = {part for word in other_words for part in re.split(r"[^\w]+", word.lower()) if len(part) >= 5}
    if any(name in password.lower() for name in names):
        problems.append("Password must not contain your name or email address.")
    if not problems:
        words = [w for w in (username, *other_words, "london", "sde", "londonsde") if w]
        estimate = zxcvbn(password[:_ESTIMATE_CHARS], user_inputs=words)
        if estimate["score"] < MIN_SCORE:
            warning = (estimate["feedback"].get("warning") or "").rstrip(".")
            problems.append("This password is too easy to guess" + (f" ({warning.lower()})" if warning else "")
                            + ". Try three or four unrelated words together.")
    return problems


# Verifying against this keeps the time of a sign-in for an unknown user close to a real one.
DUMMY_HASH = hash_password("not-a-real-password-0000")
