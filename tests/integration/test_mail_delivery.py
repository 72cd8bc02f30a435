"""The worker's email delivery through a real SMTP server (aiosmtpd on loopback): plain, STARTTLS with the server's
certificate checked, authentication with the password read from a file, and a failed delivery left for a retry."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session, sessionmaker

from gateway import outbox
from gateway.config import MailSettings, Settings
from gateway.db import unit_of_work

USER, PASSWORD = "gateway", "relay-password-1"


class Inbox:
    def __init__(self) -> None:
        self.received: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok)


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the client is given it as its CA file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "smtp.crt", folder / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    """An SMTP relay offering STARTTLS and requiring authentication (only over TLS, aiosmtpd's default)."""
    import ssl

    cert_file, key_file = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=_authenticator, auth_required=True)
    controller.start()
    try:
        yield inbox, port, cert_file
    finally:
        controller.stop()


def _deliver(settings: Settings, factory: sessionmaker[Session], mail: MailSettings) -> outbox.OutboxMessage:
    with unit_of_work(factory) as s:
        outbox.send_email(s, "researcher@example.org", "Your project was approved", "It starts on Monday.")
    configured = settings.model_copy(update={"mail": mail})
    outbox.process(outbox.WorkerContext(settings=configured, factory=factory))
    with factory() as s:
        message = s.query(outbox.OutboxMessage).order_by(outbox.OutboxMessage.id.desc()).first()
        assert message is not None
        return message


def _mail(port: int, cert_file: Path, password_file: Path, **changes: Any) -> MailSettings:
    values: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_ca_file": cert_file,
                              "smtp_username": USER, "smtp_password_file": password_file,
                              "from_address": "London SDE <sde@nhs.example>"}
    return MailSettings(**{**values, **changes})


def test_emails_go_through_the_relay_over_starttls_with_its_certificate_checked(
        settings: Settings, session_factory: sessionmaker[Session], relay: tuple[Inbox, int, Path],
        tmp_path: Path) -> None:
    inbox, port, cert_file = relay
    password_file = tmp_path / "smtp-password"
    password_file.write_text(PASSWORD + "\n")
    message = _deliver(settings, session_factory, _mail(port, cert_file, password_file))
    assert message.done_at is not None and message.last_error is None
    [received] = inbox.received
    assert (received["To"], received["From"], received["Subject"]) == (
        "researcher@example.org", "London SDE <sde@nhs.example>", "Your project was approved")
    assert "It starts on Monday." in received.get_payload()
    assert not (settings.instance_dir / "mail").exists()  # sent, not written to a file


@pytest.mark.parametrize("change", ["wrong password", "certificate not trusted", "relay down"])
def test_a_failed_delivery_stays_queued_for_a_retry(settings: Settings, session_factory: sessionmaker[Session],
                                                   relay: tuple[Inbox, int, Path], tmp_path: Path,
                                                   change: str) -> None:
    inbox, port, cert_file = relay
    password_file = tmp_path / "smtp-password"
    password_file.write_text("not-the-password" if change == "wrong password" else PASSWORD)
    (tmp_path / "other").mkdir()
    other_ca, _ = _certificate(tmp_path / "other")  # a certificate the relay does not hold
    mail = _mail(_free_port() if change == "relay down" else port,
                 other_ca if change == "certificate not trusted" else cert_file, password_file,
                 smtp_timeout_seconds=3)  # a refused login is answered late (the relay slows guessing)
    message = _deliver(settings, session_factory, mail)
    assert message.done_at is None and message.failed_at is None and message.last_error
    assert message.available_at > dt.datetime.now(dt.UTC)  # tried again later
    assert inbox.received == []


def test_without_a_relay_each_email_is_a_file(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    message = _deliver(settings, session_factory, MailSettings())
    assert message.done_at is not None
    [written] = list((settings.instance_dir / "mail").glob("*.eml"))
    assert "Your project was approved" in written.read_text()
