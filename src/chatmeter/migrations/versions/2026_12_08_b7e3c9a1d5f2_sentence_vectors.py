"""passages keep their sentences' vectors, made at training

- chunks.sentence_vectors: the vectors grounding scores a passage's sentences with
  (``knowledge.sentences.pack``); None on every passage trained before, whose
  sentences the chat turn embeds itself, as it did. Nullable and read by new code
  only: older processes still running ignore it.

Revision ID: b7e3c9a1d5f2
Revises: d2a6f9c4b8e1
Create Date: 2026-12-08 00:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e3c9a1d5f2"
down_revision: str | None = "d2a6f9c4b8e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("chunks", sa.Column("sentence_vectors", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Not in batch mode: SQLite (3.35 and later) drops a column in place, where a batch
    # would copy the table and lose the full-text triggers on it.
    op.drop_column("chunks", "sentence_vectors")
