"""upload parts and quotas

Uploads are stored a mebibyte a row in ``training_file_parts`` instead of
whole in ``training_files.content``, so that neither the web process nor the
worker ever holds a whole file; files still waiting to be trained keep their
bytes (as one part). An index on ``training_files (account_id, status)``
serves the per-account quotas.

Revision ID: a1f3c9e5d7b2
Revises: a1c4e7f20b53
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1f3c9e5d7b2"
down_revision: str | None = "a1c4e7f20b53"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "training_file_parts",
        sa.Column("file_id", FILE_ID, nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["training_files.id"],
            name=op.f("fk_training_file_parts_file_id_training_files"),
        ),
        sa.PrimaryKeyConstraint("file_id", "ordinal", name=op.f("pk_training_file_parts")),
    )
    op.execute(
        "INSERT INTO training_file_parts (file_id, ordinal, data) "
        "SELECT id, 0, content FROM training_files WHERE content IS NOT NULL"
    )
    # SQLite drops a plain column in place (3.35+); a batch would copy the table,
    # which chunks reference.
    op.execute("ALTER TABLE training_files DROP COLUMN content")
    op.create_index(
        "ix_training_files_account", "training_files", ["account_id", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_training_files_account", table_name="training_files")
    op.add_column("training_files", sa.Column("content", sa.LargeBinary(), nullable=True))
    connection = op.get_bind()
    waiting = connection.execute(
        sa.text("SELECT DISTINCT file_id FROM training_file_parts")
    ).scalars()
    for file_id in list(waiting):
        parts = connection.execute(
            sa.text("SELECT data FROM training_file_parts WHERE file_id = :id ORDER BY ordinal"),
            {"id": file_id},
        ).scalars()
        connection.execute(
            sa.text("UPDATE training_files SET content = :data WHERE id = :id"),
            {"data": b"".join(parts), "id": file_id},
        )
    op.drop_table("training_file_parts")
