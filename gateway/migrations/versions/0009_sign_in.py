"""sign-in: server-side sessions, forced first password change, second-factor policy with reasons, expiring tokens

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28

What happens to existing data:
- ``role_policies`` rows that said "no second factor" are removed: they were written when that was the default,
  without a confirmation or a reason. Such a role now follows the default (a second factor in production) until
  an administrator relaxes it again, with a reason. Rows that required a second factor are kept.
- API tokens made without an expiry get one: 366 days after they were made, but never less than 30 days after
  this upgrade, so a script keeps working long enough for its owner to replace the token (the account page and
  the API show the new date). From now on the column cannot be empty.
- Browser sessions signed before the upgrade end (they lived only in a cookie): everyone signs in again.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TOKEN_MAX_DAYS = 366
TOKEN_GRACE_DAYS = 30


def _give_tokens_an_expiry() -> None:
    bind = op.get_bind()
    tokens = sa.table("api_tokens", sa.column("id", sa.Integer()),
                      sa.column("created_at", gateway.db.UTCDateTime(timezone=True)),
                      sa.column("expires_at", gateway.db.UTCDateTime(timezone=True)))
    now = dt.datetime.now(dt.UTC)
    rows = bind.execute(sa.select(tokens.c.id, tokens.c.created_at).where(tokens.c.expires_at.is_(None))).all()
    for token_id, created_at in rows:
        expiry = max(created_at + dt.timedelta(days=TOKEN_MAX_DAYS), now + dt.timedelta(days=TOKEN_GRACE_DAYS))
        bind.execute(sa.update(tokens).where(tokens.c.id == token_id).values(expires_at=expiry))


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("password_changed_at", gateway.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("must_change_password", server_default=None)

    policies = sa.table("role_policies", sa.column("totp_required", sa.Boolean()))
    op.execute(sa.delete(policies).where(policies.c.totp_required == sa.false()))
    with op.batch_alter_table("role_policies") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("changed_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("changed_at", gateway.db.UTCDateTime(timezone=True), nullable=True))
        batch.create_foreign_key(op.f("fk_role_policies_changed_by_id_users"), "users", ["changed_by_id"], ["id"])
        batch.create_check_constraint(op.f("ck_role_policies_changed_pair"),
                                      "(changed_by_id IS NULL) = (changed_at IS NULL)")

    _give_tokens_an_expiry()
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("expires_at", existing_type=gateway.db.UTCDateTime(timezone=True), nullable=False)

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=40), nullable=True),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("signed_in_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=40), nullable=True),
        sa.Column("pending_totp_secret", sa.String(length=64), nullable=True),
        sa.CheckConstraint("(state = 'ended') = (ended_at IS NOT NULL)", name=op.f("ck_web_sessions_ended_pair")),
        sa.CheckConstraint("(state <> 'signed_in' OR signed_in_at IS NOT NULL) "
                           "AND (state IN ('signed_in', 'ended') OR signed_in_at IS NULL)",
                           name=op.f("ck_web_sessions_signed_in_pair")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_web_sessions_key_hash")),
    )
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"], unique=False)
    op.create_index(op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_sessions_expires_at"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_user_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("expires_at", existing_type=gateway.db.UTCDateTime(timezone=True), nullable=True)
    with op.batch_alter_table("role_policies") as batch:
        batch.drop_constraint(op.f("ck_role_policies_changed_pair"), type_="check")
        batch.drop_constraint(op.f("fk_role_policies_changed_by_id_users"), type_="foreignkey")
        batch.drop_column("changed_at")
        batch.drop_column("changed_by_id")
        batch.drop_column("reason")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("must_change_password")
