from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from gateway.workspaces.tickets import (
    MAX_TTL_SECONDS,
    TicketError,
    TicketVerifier,
    load_secret,
    mint_ticket,
    verify_ticket,
    write_new_secret,
)

SECRET = b"s" * 48
NOW = 1_800_000_000.0


def _signed(payload: dict[str, object], secret: bytes = SECRET) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    sig = hmac.new(secret, f"v1.{body}".encode(), hashlib.sha256).digest()
    return f"v1.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_round_trip_carries_user_and_server() -> None:
    claims = verify_ticket(SECRET, mint_ticket(SECRET, "alice", "p1", now=NOW), now=NOW + 1)
    assert (claims.username, claims.server_name) == ("alice", "p1")
    assert claims.expires_at == int(NOW) + 30


def test_each_ticket_has_its_own_nonce() -> None:
    first = verify_ticket(SECRET, mint_ticket(SECRET, "alice", "p1", now=NOW), now=NOW)
    second = verify_ticket(SECRET, mint_ticket(SECRET, "alice", "p1", now=NOW), now=NOW)
    assert first.nonce != second.nonce


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(TicketError, match="signature"):
        verify_ticket(b"t" * 48, mint_ticket(SECRET, "alice", "p1", now=NOW), now=NOW)


def test_tampered_payload_is_refused() -> None:
    version, _payload, sig = mint_ticket(SECRET, "alice", "p1", now=NOW).split(".")
    other = mint_ticket(SECRET, "mallory", "p1", now=NOW).split(".")[1]
    with pytest.raises(TicketError, match="signature"):
        verify_ticket(SECRET, f"{version}.{other}.{sig}", now=NOW)


def test_expired_ticket_is_refused() -> None:
    ticket = mint_ticket(SECRET, "alice", "p1", ttl_seconds=10, now=NOW)
    verify_ticket(SECRET, ticket, now=NOW + 9)
    with pytest.raises(TicketError, match="expired"):
        verify_ticket(SECRET, ticket, now=NOW + 60)


def test_lifetime_is_capped_at_mint_and_at_verify() -> None:
    with pytest.raises(ValueError):
        mint_ticket(SECRET, "alice", "p1", ttl_seconds=MAX_TTL_SECONDS + 1)
    # A correctly signed ticket claiming a long life (e.g. from a buggy minter) is refused too.
    long_lived = _signed({"u": "alice", "s": "p1", "exp": int(NOW) + 3600, "n": "0" * 32})
    with pytest.raises(TicketError, match="longer"):
        verify_ticket(SECRET, long_lived, now=NOW)


@pytest.mark.parametrize(
    "ticket",
    ["", "v1", "v1.a.b.c", "v2.abc.def", "v1.!!!.???", _signed({"u": "alice"}), _signed(["list"])],
)
def test_malformed_tickets_are_refused(ticket: str) -> None:
    with pytest.raises(TicketError):
        verify_ticket(SECRET, ticket, now=NOW)


def test_verifier_accepts_a_ticket_once() -> None:
    verifier = TicketVerifier(SECRET)
    ticket = mint_ticket(SECRET, "alice", "p1", now=NOW)
    assert verifier.verify(ticket, now=NOW).username == "alice"
    with pytest.raises(TicketError, match="already used"):
        verifier.verify(ticket, now=NOW + 1)


def test_verifier_forgets_nonces_once_their_tickets_expired() -> None:
    verifier = TicketVerifier(SECRET)
    verifier.verify(mint_ticket(SECRET, "alice", "p1", ttl_seconds=5, now=NOW), now=NOW)
    assert len(verifier.nonces) == 1
    verifier.verify(mint_ticket(SECRET, "bob", "p2", now=NOW + 100), now=NOW + 100)
    assert len(verifier.nonces) == 1


def test_a_ticket_used_before_a_hub_restart_is_refused_after_it(tmp_path: Path) -> None:
    ticket = mint_ticket(SECRET, "alice", "p1", now=NOW)
    before_restart = TicketVerifier(SECRET, tmp_path / "spent.sqlite")
    assert before_restart.verify(ticket, now=NOW).username == "alice"
    after_restart = TicketVerifier(SECRET, tmp_path / "spent.sqlite")  # a new process, the same state folder
    with pytest.raises(TicketError, match="already used"):
        after_restart.verify(ticket, now=NOW + 1)
    assert (tmp_path / "spent.sqlite").stat().st_mode & 0o777 == 0o600
    after_restart.verify(mint_ticket(SECRET, "bob", "p2", ttl_seconds=5, now=NOW + 100), now=NOW + 100)
    assert len(after_restart.nonces) == 1  # alice's expired nonce was forgotten


def test_short_secrets_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        mint_ticket(b"short", "alice", "p1")
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(ValueError):
        load_secret(tmp_path / "short")


def test_secret_file_is_private_and_loadable(tmp_path: Path) -> None:
    path = tmp_path / "ticket-secret"
    written = write_new_secret(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_secret(path) == written
