"""Short-lived sign-in tickets from the gateway to JupyterHub.

The gateway has already authenticated the researcher (password + MFA), so the hub must not ask
again. The gateway mints a ticket naming the hub user and the server to open; the hub's
`TicketAuthenticator` verifies it and logs the user in. This module is the single definition of
the format: both sides import it (stdlib only, so the hub process can import it too).

Format: ``v1.<payload>.<signature>`` where ``payload`` is base64url (no padding) of compact JSON
``{"u": user, "s": server_name, "exp": unix_seconds, "n": nonce}`` and ``signature`` is
base64url of HMAC-SHA-256 over the ASCII bytes ``v1.<payload>`` with the shared secret.
A ticket lives at most `MAX_TTL_SECONDS`, and each nonce is accepted once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = "v1"
MAX_TTL_SECONDS = 60
DEFAULT_TTL_SECONDS = 30
MIN_SECRET_BYTES = 32
# Clock skew tolerated between the gateway and hub hosts when checking expiry.
CLOCK_SKEW_SECONDS = 5


class TicketError(Exception):
    """The ticket is malformed, wrongly signed, expired, too long-lived or replayed."""


@dataclass(frozen=True)
class TicketClaims:
    username: str
    server_name: str
    expires_at: int
    nonce: str


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise TicketError("ticket is not base64url") from exc


def _sign(secret: bytes, signed_part: str) -> bytes:
    return hmac.new(secret, signed_part.encode("ascii"), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"ticket secret must be at least {MIN_SECRET_BYTES} bytes")


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """Read the shared secret from a file (surrounding whitespace ignored)."""
    secret = Path(path).read_bytes().strip()
    _check_secret(secret)
    return secret


def write_new_secret(path: str | os.PathLike[str]) -> bytes:
    """Create a random secret file readable by its owner only (for set-up and tests)."""
    secret = secrets.token_hex(32).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret + b"\n")
    return secret


def mint_ticket(
    secret: bytes,
    username: str,
    server_name: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> str:
    """Return a signed ticket letting `username` open server `server_name` once."""
    _check_secret(secret)
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be in 1..{MAX_TTL_SECONDS}")
    if not username:
        raise ValueError("username is required")
    issued = int(time.time() if now is None else now)
    claims = {"u": username, "s": server_name, "exp": issued + ttl_seconds, "n": secrets.token_hex(16)}
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    signed_part = f"{VERSION}.{payload}"
    return f"{signed_part}.{_b64encode(_sign(secret, signed_part))}"


def verify_ticket(secret: bytes, ticket: str, now: float | None = None) -> TicketClaims:
    """Check signature, shape and expiry; return the claims. Does NOT record the nonce.

    Use `NonceRegistry.consume` (or `TicketVerifier`) to refuse replays.
    """
    _check_secret(secret)
    parts = ticket.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise TicketError("not a v1 ticket")
    signed_part = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(secret, signed_part), _b64decode(parts[2])):
        raise TicketError("bad signature")
    try:
        raw = json.loads(_b64decode(parts[1]))
    except ValueError as exc:
        raise TicketError("payload is not JSON") from exc
    if not isinstance(raw, dict):
        raise TicketError("payload is not an object")
    username, server_name, expires_at, nonce = raw.get("u"), raw.get("s"), raw.get("exp"), raw.get("n")
    if not (isinstance(username, str) and username):
        raise TicketError("missing user")
    if not isinstance(server_name, str):
        raise TicketError("missing server name")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        raise TicketError("missing expiry")
    if not (isinstance(nonce, str) and len(nonce) >= 16):
        raise TicketError("missing nonce")
    current = time.time() if now is None else now
    if expires_at <= current - CLOCK_SKEW_SECONDS:
        raise TicketError("ticket expired")
    if expires_at > current + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS:
        raise TicketError("ticket lives longer than allowed")
    return TicketClaims(username=username, server_name=server_name, expires_at=expires_at, nonce=nonce)


class NonceRegistry:
    """Remembers nonces until their ticket expires, so each ticket is accepted once.

    With a ``path`` the spent nonces are kept in a small SQLite file (the hub's state folder), so a
    ticket used just before a hub restart cannot be replayed after it, and several hub processes
    sharing the folder agree. Without one they are kept in memory (tests, a throwaway hub).
    """

    def __init__(self, path: Path | None = None) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._path = path
        if path is not None:
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS spent (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)")
            os.chmod(path, 0o600)

    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        return sqlite3.connect(self._path, timeout=5, isolation_level=None)  # autocommit: one statement each

    def consume(self, claims: TicketClaims, now: float | None = None) -> None:
        current = time.time() if now is None else now
        horizon = current - CLOCK_SKEW_SECONDS
        if self._path is not None:
            db = self._connect()
            try:
                db.execute("DELETE FROM spent WHERE expires_at <= ?", (horizon,))
                try:
                    db.execute("INSERT INTO spent (nonce, expires_at) VALUES (?, ?)", (claims.nonce, claims.expires_at))
                except sqlite3.IntegrityError:
                    raise TicketError("ticket already used") from None
            finally:
                db.close()
            return
        with self._lock:
            for nonce in [n for n, exp in self._seen.items() if exp <= horizon]:
                del self._seen[nonce]
            if claims.nonce in self._seen:
                raise TicketError("ticket already used")
            self._seen[claims.nonce] = claims.expires_at

    def __len__(self) -> int:
        if self._path is not None:
            db = self._connect()
            try:
                return int(db.execute("SELECT count(*) FROM spent").fetchone()[0])
            finally:
                db.close()
        return len(self._seen)


class TicketVerifier:
    """Verify-and-consume in one call: what the hub uses."""

    def __init__(self, secret: bytes, spent_nonces_file: Path | None = None) -> None:
        _check_secret(secret)
        self._secret = secret
        self.nonces = NonceRegistry(spent_nonces_file)

    def verify(self, ticket: str, now: float | None = None) -> TicketClaims:
        claims = verify_ticket(self._secret, ticket, now=now)
        self.nonces.consume(claims, now=now)
        return claims
