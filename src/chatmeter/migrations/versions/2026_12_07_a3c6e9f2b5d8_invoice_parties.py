"""invoices keep the parties they were issued between

- invoices.parties: the seller's and the customer's names, addresses and tax ids as at
  the invoice's issue (JSON, ``billing.parties``). Empty on invoices issued before: those
  go on showing the parties as they are now, all that is known of them.

Revision ID: a3c6e9f2b5d8
Revises: f2a9c4e6b1d7
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a3c6e9f2b5d8"
down_revision: str | None = "f2a9c4e6b1d7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("parties", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("parties")
