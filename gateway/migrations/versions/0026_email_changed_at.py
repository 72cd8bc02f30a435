"""an account remembers when its email address last changed, so a set-up link is not sent to an address just changed
(a directory password phished, and the person's own mail attribute edited, would otherwise receive it); and a token
remembers the token that made it, so revoking a leaked token revokes what it made

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_changed_at", gateway.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_token_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_tokens_parent_token_id"), ["parent_token_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_api_tokens_parent_token_id_api_tokens"), "api_tokens",
                                    ["parent_token_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_parent_token_id_api_tokens"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_tokens_parent_token_id"))
        batch_op.drop_column("parent_token_id")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_changed_at")
