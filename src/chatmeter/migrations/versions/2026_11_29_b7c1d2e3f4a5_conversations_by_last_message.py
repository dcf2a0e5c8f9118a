"""conversations by last message

An index on (account_id, updated_at), so that the usage page reads only the
conversations with messages in its range.

Revision ID: b7c1d2e3f4a5
Revises: 3afc33630a0c
Create Date: 2026-11-29 22:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "b7c1d2e3f4a5"
down_revision: str | None = "3afc33630a0c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversations_account_updated", ["account_id", "updated_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_account_updated")
