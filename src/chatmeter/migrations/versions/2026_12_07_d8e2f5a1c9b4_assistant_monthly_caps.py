"""per-assistant monthly token caps

- assistants: ``monthly_token_cap`` (tokens per calendar month of the account's time
  zone, 0 for none), ``monthly_cap_set_on`` (the local day the cap last changed) and
  ``monthly_cap_used_then`` (the month's tokens at that moment, which ``ledger
  verify`` allows above a cap lowered below them).

Revision ID: d8e2f5a1c9b4
Revises: b3f9a6d2c1e8
Create Date: 2026-12-07 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d8e2f5a1c9b4"
down_revision: str | None = "b3f9a6d2c1e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "assistants",
        sa.Column("monthly_token_cap", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("assistants", sa.Column("monthly_cap_set_on", sa.Date(), nullable=True))
    op.add_column(
        "assistants",
        sa.Column("monthly_cap_used_then", sa.BigInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("assistants") as batch_op:
        for name in ("monthly_cap_used_then", "monthly_cap_set_on", "monthly_token_cap"):
            batch_op.drop_column(name)
