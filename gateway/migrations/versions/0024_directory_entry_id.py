"""directory accounts remember the directory entry they were made from (its entryUUID), so a username the
organisation gives to somebody else later does not open the old account

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05

Accounts made before this migration have none; each records its entry's id at its next sign-in, or at the worker's
next reading of the directory (the entry that holds the username then).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("directory_entry_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("directory_entry_id")
