"""panel tokens and sessions

Single-use links of the control panel (password reset, contact email
confirmation, team invitation), stored as hashes; and each user's session
epoch, which signing out moves on to end every session (sign-out everywhere).

Revision ID: 3afc33630a0c
Revises: eab6fda6e736
Create Date: 2026-11-29 21:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chatmeter.db

revision: str = "3afc33630a0c"
down_revision: str | None = "eab6fda6e736"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "panel_tokens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("expires_at", chatmeter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", chatmeter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_panel_tokens_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_panel_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_panel_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_panel_tokens_token_hash")),
    )
    with op.batch_alter_table("panel_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_panel_tokens_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_panel_tokens_user_id"), ["user_id"], unique=False)

    # Existing cookies carry no epoch and are refused: everyone signs in once more.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")

    with op.batch_alter_table("panel_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_panel_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_panel_tokens_account_id"))

    op.drop_table("panel_tokens")
