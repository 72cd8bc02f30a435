"""the service-wide differencing ledger: checked tables keyed by the population they were computed on

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "differencing_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("file_version", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("population_key", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("recorded_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["file_id"], ["output_files.id"], ondelete="CASCADE",
                                name=op.f("fk_differencing_ledger_file_id_output_files")),
        sa.ForeignKeyConstraint(["request_id"], ["output_requests.id"], ondelete="CASCADE",
                                name=op.f("fk_differencing_ledger_request_id_output_requests")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_differencing_ledger_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_differencing_ledger")),
        sa.UniqueConstraint("file_id", "file_version", name=op.f("uq_differencing_ledger_file_id")),
    )
    with op.batch_alter_table("differencing_ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_differencing_ledger_file_id"), ["file_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_differencing_ledger_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_differencing_ledger_project_id"), ["project_id"], unique=False)
        batch_op.create_index("ix_differencing_ledger_population", ["population_key", "dataset"], unique=False)
    # Tables released before this revision stay compared within their own project (the check always reads the
    # project's releases); the ledger fills as tables are checked. Their population is not known
    # here: it is read from the extract each check recomputes on.


def downgrade() -> None:
    with op.batch_alter_table("differencing_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_differencing_ledger_population")
        batch_op.drop_index(batch_op.f("ix_differencing_ledger_project_id"))
        batch_op.drop_index(batch_op.f("ix_differencing_ledger_request_id"))
        batch_op.drop_index(batch_op.f("ix_differencing_ledger_file_id"))
    op.drop_table("differencing_ledger")
