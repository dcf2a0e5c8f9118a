"""drop idempotency_records: no code has used it

The table was made for request keys of operations without a natural key of their
own; every such operation keys its own rows instead (holds, grants, invoices), and
no version of the code reads or writes it. Dropping it is safe while older
processes still run.

Revision ID: c5f8a1d3e7b2
Revises: b9d4e2f7a6c1
Create Date: 2026-12-07 21:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chatmeter.db

revision: str = "c5f8a1d3e7b2"
down_revision: str | None = "b9d4e2f7a6c1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("idempotency_records")


def downgrade() -> None:
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", chatmeter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_idempotency_records_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint(
            "account_id", "scope", "key", name=op.f("uq_idempotency_records_account_id_scope_key")
        ),
        sqlite_autoincrement=True,
    )
