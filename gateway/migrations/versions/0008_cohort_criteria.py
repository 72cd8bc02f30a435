"""cohort criteria on applications and projects

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLES = ("applications", "projects")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            # Rows already there selected everyone: empty lists and no ages say exactly that.
            batch.add_column(sa.Column("cohort_boroughs", sa.JSON(), nullable=False, server_default="[]"))
            batch.add_column(sa.Column("cohort_age_min", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("cohort_age_max", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("cohort_conditions", sa.JSON(), nullable=False, server_default="[]"))
        with op.batch_alter_table(table) as batch:
            batch.alter_column("cohort_boroughs", server_default=None)
            batch.alter_column("cohort_conditions", server_default=None)
            for end in ("min", "max"):
                batch.create_check_constraint(
                    op.f(f"ck_{table}_cohort_age_{end}_range"),
                    f"cohort_age_{end} IS NULL OR (cohort_age_{end} >= 0 AND cohort_age_{end} <= 130)")
            batch.create_check_constraint(
                op.f(f"ck_{table}_cohort_age_order"),
                "cohort_age_min IS NULL OR cohort_age_max IS NULL OR cohort_age_min <= cohort_age_max")


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_cohort_age_order"), type_="check")
            for end in ("max", "min"):
                batch.drop_constraint(op.f(f"ck_{table}_cohort_age_{end}_range"), type_="check")
            batch.drop_column("cohort_conditions")
            batch.drop_column("cohort_age_max")
            batch.drop_column("cohort_age_min")
            batch.drop_column("cohort_boroughs")
