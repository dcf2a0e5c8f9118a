"""Training files and the passages (chunks) made from them."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    DDL,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class FileStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class TrainingFile(Base):
    __tablename__ = "training_files"
    __table_args__ = (
        UniqueConstraint("assistant_id", "sha256"),
        Index("ix_training_files_queue", "status", "id"),
        Index("ix_training_files_account", "account_id", "status"),  # the account's quotas
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    assistant_id: Mapped[int] = mapped_column(ForeignKey("assistants.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    filename: Mapped[str] = mapped_column(String(255))
    # What visitors see as the source: the customer's title, else the document's own
    # (``detected_title``, found by training), else the file's name made readable.
    title: Mapped[str] = mapped_column(String(200), default="", server_default="")
    detected_title: Mapped[str] = mapped_column(String(200), default="", server_default="")
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str | None] = mapped_column(String(16), default=None)
    status: Mapped[str] = mapped_column(String(16), default=FileStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent
    pages: Mapped[int] = mapped_column(Integer, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)
    error_message: Mapped[str | None] = mapped_column(String(500), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class FilePart(Base):
    """An upload's bytes, a mebibyte a row, until the file is processed.

    In parts so that neither the web process storing an upload nor the worker
    reading it back ever holds the whole file; deleted once the file is ready
    or failed, so the database keeps text, not uploads.
    """

    __tablename__ = "training_file_parts"

    file_id: Mapped[int] = mapped_column(ForeignKey("training_files.id"), primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_assistant", "assistant_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    assistant_id: Mapped[int] = mapped_column(ForeignKey("assistants.id"))
    file_id: Mapped[int] = mapped_column(ForeignKey("training_files.id"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    page: Mapped[int] = mapped_column(Integer)
    heading: Mapped[str] = mapped_column(String(1000), default="")
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    # float32, L2-normalised, little-endian: numpy.frombuffer(..., "<f4")
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    # Its sentences' vectors for grounding (``knowledge.sentences.pack``: a digest of the
    # sentences, then float16 rows); None if trained before they were stored.
    sentence_vectors: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


# Keyword search: SQLite's FTS5 (bm25) kept in step by triggers; PostgreSQL's
# full-text search over an expression index.
FULL_TEXT_DDL = {
    "sqlite": [
        """CREATE VIRTUAL TABLE chunks_fts USING fts5(
            heading, text, content='chunks', content_rowid='id', tokenize='porter unicode61')""",
        """CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);
        END""",
        """CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, heading, text)
            VALUES ('delete', old.id, old.heading, old.text);
        END""",
    ],
    "postgresql": [
        """ALTER TABLE chunks ADD COLUMN search_vector tsvector
            GENERATED ALWAYS AS (to_tsvector('english', heading || ' ' || text)) STORED""",
        "CREATE INDEX ix_chunks_fulltext ON chunks USING gin (search_vector)",
    ],
}

for _dialect, _statements in FULL_TEXT_DDL.items():
    for _statement in _statements:
        event.listen(Chunk.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect))
