"""workspace sessions count the bytes their server sent to the browser, and when that passed the alert threshold

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspace_sessions") as batch:
        batch.add_column(sa.Column("bytes_to_browser", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("traffic_alert_at", gateway.db.UTCDateTime(timezone=True), nullable=True))
        batch.create_check_constraint("bytes_to_browser_not_negative", "bytes_to_browser >= 0")


def downgrade() -> None:
    with op.batch_alter_table("workspace_sessions") as batch:
        batch.drop_constraint("bytes_to_browser_not_negative", type_="check")
        batch.drop_column("traffic_alert_at")
        batch.drop_column("bytes_to_browser")
