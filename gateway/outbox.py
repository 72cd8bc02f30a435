"""Side effects through an outbox: rows written in the deciding transaction, delivered by the worker.

A decision commits with its outbox rows; an email server or JupyterHub that is down later never
rolls the decision back or half-applies it. Delivery is retried with back-off; handlers must be
idempotent because a crash between delivering and marking done repeats the delivery.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from gateway.db import Base, UTCDateTime, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("NOT (done_at IS NOT NULL AND failed_at IS NOT NULL)", name="done_or_failed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


@dataclass
class WorkerContext:
    """What handlers may use: the settings and a session factory for their own transactions."""

    settings: Any
    factory: sessionmaker[Session]


Handler = Callable[[WorkerContext, dict[str, Any]], None]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn
    return register


def enqueue(session: Session, kind: str, payload: dict[str, Any], *, dedupe_key: str | None = None,
            available_at: dt.datetime | None = None) -> OutboxMessage | None:
    """Queue a side effect in the caller's transaction. A repeated ``dedupe_key`` is ignored."""
    if dedupe_key is not None:
        existing = session.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key))
        if existing is not None:
            return None
    message = OutboxMessage(kind=kind, payload=payload, dedupe_key=dedupe_key,
                            available_at=available_at or utcnow())
    session.add(message)
    session.flush()
    return message


SCRUBBED_BODY = "(removed once delivered: it carried a one-time code)"


def send_email(session: Session, to: str | None, subject: str, body: str, *, dedupe_key: str | None = None,
               secret: bool = False) -> None:
    """Queue an email. ``secret``: the body carries a one-time code, removed from the row once it is delivered (or
    has failed for good), so the table does not keep usable codes."""
    if to:
        payload: dict[str, Any] = {"to": to, "subject": subject, "body": body}
        if secret:
            payload["secret"] = True
        enqueue(session, "email", payload, dedupe_key=dedupe_key)


def _claim(factory: sessionmaker[Session]) -> tuple[int, str, dict[str, Any]] | None:
    with factory() as session, session.begin():
        query = (select(OutboxMessage)
                 .where(OutboxMessage.done_at.is_(None), OutboxMessage.failed_at.is_(None),
                        OutboxMessage.available_at <= utcnow())
                 .order_by(OutboxMessage.id).limit(1).with_for_update(skip_locked=True))
        message = session.scalar(query)
        if message is None:
            return None
        message.attempts += 1
        # Until this attempt is marked done, nobody else picks it up for a while.
        message.available_at = utcnow() + dt.timedelta(minutes=5)
        return message.id, message.kind, dict(message.payload)


def _finish(factory: sessionmaker[Session], message_id: int, error: str | None) -> None:
    with factory() as session, session.begin():
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        if message.payload.get("secret") and (error is None or message.attempts >= MAX_ATTEMPTS):
            message.payload = {**message.payload, "body": SCRUBBED_BODY}
        if error is None:
            message.done_at = utcnow()
            message.last_error = None
        elif message.attempts >= MAX_ATTEMPTS:
            message.failed_at = utcnow()
            message.last_error = error
        else:
            message.last_error = error
            message.available_at = utcnow() + dt.timedelta(seconds=min(3600, 2 ** message.attempts * 15))


def process(ctx: WorkerContext, limit: int = 100) -> int:
    """Deliver up to ``limit`` due messages; returns how many were attempted."""
    attempted = 0
    while attempted < limit:
        claimed = _claim(ctx.factory)
        if claimed is None:
            break
        message_id, kind, payload = claimed
        attempted += 1
        fn = HANDLERS.get(kind)
        try:
            if fn is None:
                raise LookupError(f"no handler for outbox kind {kind!r}")
            fn(ctx, payload)
        except Exception as exc:
            log.warning("outbox message %s (%s) failed: %s", message_id, kind, exc)
            _finish(ctx.factory, message_id, f"{type(exc).__name__}: {exc}")
        else:
            _finish(ctx.factory, message_id, None)
    return attempted


@handler("email")
def deliver_email(ctx: WorkerContext, payload: dict[str, Any]) -> None:
    """Send one email through the configured SMTP relay (``mail.smtp_host``), or, without one, write it as an RFC 822
    file under instance/mail/ (the demo and tests). A failure raises, so the outbox tries again later."""
    from email.message import EmailMessage

    mail = ctx.settings.mail
    message = EmailMessage()
    message["To"] = payload["to"]
    message["From"] = mail.from_address
    message["Subject"] = payload["subject"]
    message.set_content(payload["body"])
    if mail.smtp_host:
        _send_smtp(mail, message)
        return
    mail_dir = Path(ctx.settings.instance_dir) / "mail"
    mail_dir.mkdir(parents=True, exist_ok=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    (mail_dir / f"{stamp}-{uuid.uuid4().hex[:8]}.eml").write_bytes(bytes(message))


def _send_smtp(mail: Any, message: Any) -> None:
    """smtplib, with the server's certificate checked (system CAs, or ``smtp_ca_file``) unless security is none."""
    import smtplib
    import ssl

    context = ssl.create_default_context(cafile=str(mail.smtp_ca_file) if mail.smtp_ca_file else None)
    if mail.smtp_security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(mail.smtp_host, mail.smtp_port, timeout=mail.smtp_timeout_seconds,
                                               context=context)
    else:
        client = smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.smtp_timeout_seconds)
    with client:
        if mail.smtp_security == "starttls":
            client.starttls(context=context)
        if mail.smtp_username:
            password = Path(mail.smtp_password_file).read_text().strip() if mail.smtp_password_file else ""
            client.login(mail.smtp_username, password)
        client.send_message(message)
