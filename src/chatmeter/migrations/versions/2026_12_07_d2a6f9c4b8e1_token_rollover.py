"""unused tokens that roll over: an invoice's rollover and a grant's last month

- invoices.rollover_months: months its packages' unused tokens stay usable after its
  own month (``CHATMETER_ROLLOVER_MONTHS`` when it was made); 0 on every earlier one.
- token_grants.last_period: the last month a rolling grant's tokens may be spent in;
  None (every earlier grant): its own month.

Revision ID: d2a6f9c4b8e1
Revises: c5f8a1d3e7b2
Create Date: 2026-12-07 21:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d2a6f9c4b8e1"
down_revision: str | None = "c5f8a1d3e7b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "invoices", sa.Column("rollover_months", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("token_grants", sa.Column("last_period", sa.String(length=7), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("token_grants") as batch:
        batch.drop_column("last_period")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("rollover_months")
