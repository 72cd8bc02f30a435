"""workspace sessions remember their hub user (hub names derived from the user id)

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0010"
branch_labels = None
depends_on = None

_OLD_HUB_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


def upgrade() -> None:
    with op.batch_alter_table("workspace_sessions") as batch:
        batch.add_column(sa.Column("hub_user", sa.String(64), nullable=True))
    # Sessions already there ran under the old name (the username, or user-<id>): keep it, so the gateway can
    # still stop those servers and reconcile them.
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT workspace_sessions.id, users.id, users.username FROM workspace_sessions "
        "JOIN users ON users.id = workspace_sessions.user_id")).all()
    for session_id, user_id, username in rows:
        old = username if _OLD_HUB_NAME.match(username) else f"user-{user_id}"
        conn.execute(sa.text("UPDATE workspace_sessions SET hub_user = :name WHERE id = :id"),
                     {"name": old, "id": session_id})


def downgrade() -> None:
    with op.batch_alter_table("workspace_sessions") as batch:
        batch.drop_column("hub_user")
