"""ledger entries by time

An index on (account_id, created_at): the tokens used this month, shown on
every panel page, and the usage page's ledger total read an account's entries
of a time range instead of all its history.

Revision ID: d4e5f6a7b8c9
Revises: b7c1d2e3f4a5
Create Date: 2026-11-29 23:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "d4e5f6a7b8c9"
down_revision: str | None = "b7c1d2e3f4a5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain CREATE INDEX, not a batch: on SQLite a batch that copied the table would
# drop its append-only triggers.
def upgrade() -> None:
    op.create_index(
        "ix_ledger_entries_account_created", "ledger_entries", ["account_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_account_created", table_name="ledger_entries")
