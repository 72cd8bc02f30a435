"""token scopes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Every permission that existed when scopes were introduced: tokens made before then could do anything their
# owner's roles allowed, so they keep exactly that (the roles still apply at each use).
_ALL_AT_THE_TIME = [
    "use_account", "manage_users", "manage_security_policy", "manage_organisations", "manage_agreements",
    "manage_projects", "release_extracts", "view_audit_log", "record_accreditation", "verify_accreditation",
    "view_projects", "apply", "review_applications", "chair_dac", "request_outputs", "review_outputs",
    "manage_charges",
]


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scopes", sa.JSON(), nullable=False, server_default=json.dumps(_ALL_AT_THE_TIME)))
        batch.add_column(sa.Column("read_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    # The defaults were only for the rows already there; new tokens always say what they may do.
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("scopes", server_default=None)
        batch.alter_column("read_only", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("read_only")
        batch.drop_column("scopes")
