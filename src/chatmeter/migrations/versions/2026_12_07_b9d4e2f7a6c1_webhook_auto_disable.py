"""webhook endpoints that fail for days turn themselves off

- webhook_endpoints.enabled_at: when the owner last turned the endpoint back on (None:
  on since it was made); a run of failures is counted from here at most.
- webhook_endpoints.disabled_reason, disabled_at: why and when Chatmeter turned the
  endpoint off after every delivery failed for days; None otherwise.

Revision ID: b9d4e2f7a6c1
Revises: a3c6e9f2b5d8
Create Date: 2026-12-07 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chatmeter.db

revision: str = "b9d4e2f7a6c1"
down_revision: str | None = "a3c6e9f2b5d8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(
            sa.Column("enabled_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("disabled_reason", sa.String(length=500), nullable=True))
        batch.add_column(
            sa.Column("disabled_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("disabled_reason")
        batch.drop_column("enabled_at")
