"""package requests: a researcher asks for a package in the workspace environment; an administrator decides

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


CHECKS = {
    "package_state": "state IN ('requested', 'approved', 'refused')",
    "package_ecosystem": "ecosystem IN ('python', 'r')",
    "decided_pair": "(decided_by_id IS NULL) = (decided_at IS NULL)",
    "decided_when_not_requested": "(state = 'requested') = (decided_at IS NULL)",
    "refusal_has_reason": "state <> 'refused' OR (decision_reason IS NOT NULL AND decision_reason <> '')",
}


def upgrade() -> None:
    op.create_table(
        "package_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("requested_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("ecosystem", sa.String(10), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("requested_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("decided_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        *(sa.CheckConstraint(text, name=op.f(f"ck_package_requests_{name}")) for name, text in CHECKS.items()),
    )


def downgrade() -> None:
    op.drop_table("package_requests")
