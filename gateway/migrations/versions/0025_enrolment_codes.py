"""enrolment codes: an authenticator is set up only after a one-time link emailed to the account (or a code from
the service desk), so a password alone cannot bind a new second factor

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05

Sign-ins waiting at the enrolment step when the gateway is upgraded got there with the password alone: they end,
and the person signs in again (and is sent the link).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.db
from gateway.db import utcnow

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

CHECKS = {
    "channel_known": "channel IN ('email', 'operator')",
    "email_bound_to_session": "(channel = 'email') = (web_session_id IS NOT NULL)",
    "used_or_superseded": "NOT (used_at IS NOT NULL AND superseded_at IS NOT NULL)",
}


def upgrade() -> None:
    op.create_table(
        "enrolment_codes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("web_session_id", sa.Integer, sa.ForeignKey("web_sessions.id"), nullable=True, index=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False, index=True),
        sa.Column("expires_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        *(sa.CheckConstraint(text, name=op.f(f"ck_enrolment_codes_{name}")) for name, text in CHECKS.items()),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enrolment_verified_at", gateway.db.UTCDateTime(timezone=True), nullable=True))
    sessions = sa.table("web_sessions", sa.column("state", sa.String()), sa.column("end_reason", sa.String()),
                        sa.column("pending_totp_secret", sa.String()),
                        sa.column("ended_at", gateway.db.UTCDateTime(timezone=True)))
    op.execute(sessions.update().where(sessions.c.state == "enrol")
               .values(state="ended", ended_at=utcnow(), end_reason="enrolment needs an emailed link",
                       pending_totp_secret=None))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_column("enrolment_verified_at")
    op.drop_table("enrolment_codes")
