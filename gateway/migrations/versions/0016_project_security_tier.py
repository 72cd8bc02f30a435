"""projects carry a security tier (standard/high), chosen by the DAC at approval

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every project approved before this release was approved without a tier: standard, as its workspace was.
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("security_tier", sa.String(length=20), nullable=False,
                                   server_default="standard"))
        batch.create_check_constraint(op.f("ck_projects_known_security_tier"), "security_tier IN ('standard', 'high')")


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint(op.f("ck_projects_known_security_tier"), type_="check")
        batch.drop_column("security_tier")
