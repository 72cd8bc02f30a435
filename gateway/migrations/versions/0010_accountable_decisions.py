"""accountable decisions: two-person release of high-risk extracts, reasons, generalisation on applications

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("extract_versions") as batch:
        batch.add_column(sa.Column("release_proposed_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("release_proposed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("release_proposal_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("release_reason", sa.Text(), nullable=True))
        batch.create_foreign_key(op.f("fk_extract_versions_release_proposed_by_id_users"), "users",
                                 ["release_proposed_by_id"], ["id"])
        batch.create_check_constraint(
            op.f("ck_extract_versions_proposed_pair"),
            "(release_proposed_by_id IS NULL) = (release_proposed_at IS NULL) "
            "AND (release_proposed_by_id IS NULL) = (release_proposal_reason IS NULL)")
        batch.create_check_constraint(
            op.f("ck_extract_versions_second_person"),
            "release_proposed_by_id IS NULL OR released_by_id IS NULL OR released_by_id <> release_proposed_by_id")
    for table in ("applications", "projects"):
        with op.batch_alter_table(table) as batch:
            # null: the cautious defaults of the extract pipeline (what every project so far was built with)
            batch.add_column(sa.Column("generalisation", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("projects", "applications"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("generalisation")
    with op.batch_alter_table("extract_versions") as batch:
        batch.drop_constraint(op.f("ck_extract_versions_second_person"), type_="check")
        batch.drop_constraint(op.f("ck_extract_versions_proposed_pair"), type_="check")
        batch.drop_constraint(op.f("fk_extract_versions_release_proposed_by_id_users"), type_="foreignkey")
        batch.drop_column("release_reason")
        batch.drop_column("release_proposal_reason")
        batch.drop_column("release_proposed_at")
        batch.drop_column("release_proposed_by_id")
