"""turns own their holds; per-assistant caps

- ``token_holds.owner``: who may settle or release a hold (``api`` or ``chat``);
  the chat turns' holds made before this revision (keys ``chat:…``) are theirs.
- ``token_holds.ttl_seconds``: the time to live asked for, which a retry must
  repeat, now that a live turn moves ``expires_at`` on.
- ``assistants``: ``daily_token_cap``, ``turns_per_conversation``, ``show_sources``.
- ``assistant_days``: what each assistant reserved and spent per local day.

Plain ADD COLUMN, no table copy: a SQLite batch copy would drop the triggers
and full-text objects that the models do not describe.

Revision ID: a1c4e7f20b53
Revises: a7c3e9f1b2d4
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1c4e7f20b53"
down_revision: str | None = "a7c3e9f1b2d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "token_holds", sa.Column("owner", sa.String(length=8), server_default="api", nullable=False)
    )
    op.execute("UPDATE token_holds SET owner = 'chat' WHERE key LIKE 'chat:%'")
    op.add_column(
        "token_holds", sa.Column("ttl_seconds", sa.Integer(), server_default="0", nullable=False)
    )
    seconds = (
        "CAST(EXTRACT(EPOCH FROM expires_at - created_at) AS INTEGER)"
        if op.get_bind().dialect.name == "postgresql"
        else "CAST(ROUND((julianday(expires_at) - julianday(created_at)) * 86400) AS INTEGER)"
    )
    op.execute(f"UPDATE token_holds SET ttl_seconds = {seconds}")
    for name, default in (("daily_token_cap", "100000"), ("turns_per_conversation", "50")):
        op.add_column(
            "assistants", sa.Column(name, sa.Integer(), server_default=default, nullable=False)
        )
    op.add_column(
        "assistants",
        sa.Column("show_sources", sa.String(length=8), server_default="names", nullable=False),
    )
    op.create_table(
        "assistant_days",
        sa.Column(
            "assistant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assistant_id"],
            ["assistants.id"],
            name=op.f("fk_assistant_days_assistant_id_assistants"),
        ),
        sa.PrimaryKeyConstraint("assistant_id", "day", name=op.f("pk_assistant_days")),
    )


def downgrade() -> None:
    op.drop_table("assistant_days")
    with op.batch_alter_table("assistants") as batch_op:
        for name in ("show_sources", "turns_per_conversation", "daily_token_cap"):
            batch_op.drop_column(name)
    with op.batch_alter_table("token_holds") as batch_op:
        batch_op.drop_column("ttl_seconds")
        batch_op.drop_column("owner")
