"""The customer's corrections: a question and the answer it should get."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class Correction(Base):
    """A Q&A pair the customer wrote; preferred as a source for the same and similar
    questions (shown to visitors as "Corrected answer")."""

    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_assistant", "assistant_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    assistant_id: Mapped[int] = mapped_column(ForeignKey("assistants.id"))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    # The question's embedding (float32, little-endian, L2-normalised), as chunks store theirs.
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
