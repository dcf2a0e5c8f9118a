"""onboarding, the widget's texts and theme, source titles, answers cut at the cap

- accounts: ``onboarding_dismissed_at``, when the owner closed the welcome checklist.
- assistants: ``widget_texts`` (a JSON object: the customer's own wording for the
  widget's texts, by key, over every language's default) and ``widget_theme``
  (``auto`` follows the visitor's light or dark preference, or ``light``/``dark``).
- training_files: ``title`` (what visitors see as the source; empty: the document's
  own) and ``detected_title`` (the document's title as training found it).
- messages: ``cut_off``, true when an answer stopped at the response cap.

Revision ID: e4b7d1c8a2f6
Revises: c5d8e2a9f371
Create Date: 2026-12-07 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chatmeter.db

revision: str = "e4b7d1c8a2f6"
down_revision: str | None = "c5d8e2a9f371"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN: SQLite adds a column in place, a batch would rebuild the table.
    op.add_column(
        "accounts",
        sa.Column(
            "onboarding_dismissed_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True
        ),
    )
    op.add_column(
        "assistants", sa.Column("widget_texts", sa.Text(), nullable=False, server_default="{}")
    )
    op.add_column(
        "assistants",
        sa.Column("widget_theme", sa.String(5), nullable=False, server_default="auto"),
    )
    op.add_column(
        "training_files", sa.Column("title", sa.String(200), nullable=False, server_default="")
    )
    op.add_column(
        "training_files",
        sa.Column("detected_title", sa.String(200), nullable=False, server_default=""),
    )
    op.add_column(
        "messages",
        sa.Column("cut_off", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # SQLite drops a plain column in place (3.35+); a batch would copy the table.
    for table, column in (
        ("messages", "cut_off"),
        ("training_files", "detected_title"),
        ("training_files", "title"),
        ("assistants", "widget_theme"),
        ("assistants", "widget_texts"),
        ("accounts", "onboarding_dismissed_at"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
