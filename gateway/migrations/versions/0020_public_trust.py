"""public trust: organisation identifiers, publications linked to projects, the published incidents log

Revision ID: 0020
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("identifier", sa.String(200), nullable=True))
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("doi", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("added_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("added_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("project_id", "doi"),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("occurred_on", sa.Date, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("what_happened", sa.Text, nullable=False),
        sa.Column("action_taken", sa.Text, nullable=False),
        sa.Column("recorded_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("recorded_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("incidents")
    op.drop_table("publications")
    with op.batch_alter_table("organisations") as batch:
        batch.drop_column("identifier")
