"""grounded answers, ratings and corrections

- assistants: ``answer_mode`` (how answers are made: ``quotes``, ``checked`` or
  ``generated``) and ``fallback_message`` (what the assistant says when it does
  not know; empty: a sentence naming the account's contact email). Existing
  assistants move to ``quotes``: the free generation they used states facts
  that are not in their documents.
- messages: ``answer_kind`` (how an answer was made, ``abstained`` when the
  assistant said it did not know), the visitor's ``rating`` (+1 or -1) and
  when it was given.
- corrections: the customer's own answer to a question, with the question's
  embedding, preferred as a source for the same and similar questions.

Revision ID: c5d8e2a9f371
Revises: a1f3c9e5d7b2
Create Date: 2026-12-06 21:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chatmeter.db

revision: str = "c5d8e2a9f371"
down_revision: str | None = "a1f3c9e5d7b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN: SQLite adds a column in place, a batch would rebuild the table.
    op.add_column(
        "assistants",
        sa.Column("answer_mode", sa.String(12), nullable=False, server_default="quotes"),
    )
    op.add_column(
        "assistants",
        sa.Column("fallback_message", sa.String(500), nullable=False, server_default=""),
    )
    op.add_column(
        "messages", sa.Column("answer_kind", sa.String(12), nullable=False, server_default="")
    )
    op.add_column("messages", sa.Column("rating", sa.SmallInteger(), nullable=True))
    op.add_column(
        "messages", sa.Column("rated_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "corrections",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("assistant_id", ID, nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", chatmeter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", chatmeter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_corrections_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["assistant_id"],
            ["assistants.id"],
            name=op.f("fk_corrections_assistant_id_assistants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_corrections_assistant", "corrections", ["assistant_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_corrections_assistant", table_name="corrections")
    op.drop_table("corrections")
    # SQLite drops a plain column in place (3.35+); a batch would copy the table.
    for column in ("rated_at", "rating", "answer_kind"):
        op.execute(f"ALTER TABLE messages DROP COLUMN {column}")
    for column in ("fallback_message", "answer_mode"):
        op.execute(f"ALTER TABLE assistants DROP COLUMN {column}")
