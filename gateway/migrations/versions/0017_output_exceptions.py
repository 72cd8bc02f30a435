"""output exceptions bound to file bytes, checkers' decisions on them, comments made public

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "output_exceptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["output_requests.id"],
                                name=op.f("fk_output_exceptions_request_id_output_requests")),
        sa.ForeignKeyConstraint(["file_id"], ["output_files.id"], ondelete="CASCADE",
                                name=op.f("fk_output_exceptions_file_id_output_files")),
        sa.ForeignKeyConstraint(["requested_by_id"], ["users.id"],
                                name=op.f("fk_output_exceptions_requested_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_output_exceptions")),
        sa.UniqueConstraint("file_id", "file_sha256", name=op.f("uq_output_exceptions_file_id")),
    )
    with op.batch_alter_table("output_exceptions") as batch:
        batch.create_index(batch.f("ix_output_exceptions_request_id"), ["request_id"], unique=False)
        batch.create_index(batch.f("ix_output_exceptions_file_id"), ["file_id"], unique=False)
    op.create_table(
        "output_exception_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exception_id", sa.Integer(), nullable=False),
        sa.Column("checker_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("decision IN ('accept', 'refuse')",
                           name=op.f("ck_output_exception_decisions_known_decision")),
        sa.CheckConstraint("length(reason) > 0", name=op.f("ck_output_exception_decisions_has_reason")),
        sa.ForeignKeyConstraint(["exception_id"], ["output_exceptions.id"], ondelete="CASCADE",
                                name=op.f("fk_output_exception_decisions_exception_id_output_exceptions")),
        sa.ForeignKeyConstraint(["checker_id"], ["users.id"],
                                name=op.f("fk_output_exception_decisions_checker_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_output_exception_decisions")),
        sa.UniqueConstraint("exception_id", "checker_id", name=op.f("uq_output_exception_decisions_exception_id")),
    )
    with op.batch_alter_table("output_exception_decisions") as batch:
        batch.create_index(batch.f("ix_output_exception_decisions_exception_id"), ["exception_id"], unique=False)
        batch.create_index(batch.f("ix_output_exception_decisions_checker_id"), ["checker_id"], unique=False)
    with op.batch_alter_table("output_comments") as batch:
        batch.add_column(sa.Column("published_at", gateway.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("output_comments") as batch:
        batch.drop_column("published_at")
    op.drop_table("output_exception_decisions")
    op.drop_table("output_exceptions")
