"""surge alerts: each account's multiple and minimum

- accounts: ``surge_multiple_tenths`` (30 = an alert above 3× the typical day) and
  ``surge_min_tokens`` (no alert below this many tokens today).

Revision ID: c8e1f4a7d2b9
Revises: d8e2f5a1c9b4
Create Date: 2026-12-07 04:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8e1f4a7d2b9"
down_revision: str | None = "d8e2f5a1c9b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("surge_multiple_tenths", sa.Integer(), nullable=False, server_default="30"),
    )
    op.add_column(
        "accounts",
        sa.Column("surge_min_tokens", sa.Integer(), nullable=False, server_default="2000"),
    )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("surge_min_tokens")
        batch.drop_column("surge_multiple_tenths")
