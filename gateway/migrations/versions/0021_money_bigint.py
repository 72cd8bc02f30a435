"""money columns are 64-bit: an invoice summed over many lines can pass 2**31 pence

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03

PostgreSQL only: SQLite's INTEGER is already a 64-bit integer, and rebuilding its tables (batch mode) would
drop the triggers that keep quotes and issued invoices unchangeable. ALTER COLUMN TYPE fires no row triggers.
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

MONEY_COLUMNS = {
    "quotes": ("net_pence", "vat_pence", "total_pence"),
    "quote_lines": ("unit_pence", "amount_pence"),
    "meter_events": ("amount_pence",),
    "invoices": ("net_pence", "vat_pence", "total_pence"),
    "invoice_lines": ("unit_pence", "amount_pence"),
    "project_budgets": ("cap_pence", "warned_cap_pence"),
}


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in MONEY_COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} TYPE {to}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _retype("BIGINT")


def downgrade() -> None:
    _retype("INTEGER")  # fails, as it should, if a stored amount no longer fits
