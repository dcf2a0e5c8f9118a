"""Conversations between visitors and assistants, with each message's token figures."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_account", "account_id", "id"),
        Index("ix_conversations_account_updated", "account_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # What the visitor's browser keeps; unguessable so nobody can read another's chat.
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    assistant_id: Mapped[int] = mapped_column(ForeignKey("assistants.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    visitor: Mapped[str] = mapped_column(String(64), default="")
    messages: Mapped[int] = mapped_column(Integer, default=0)
    context_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    generation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    @property
    def tokens(self) -> int:
        return self.context_tokens + self.generation_tokens


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    role: Mapped[str] = mapped_column(String(16))  # "user" or "assistant"
    content: Mapped[str] = mapped_column(Text)
    # Token figures of the turn an assistant message answers (zero on user messages).
    context_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    generation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("token_holds.id"), default=None)
    sources: Mapped[str] = mapped_column(Text, default="[]")  # JSON
    status: Mapped[str] = mapped_column(String(16), default="complete")
    # How an answer was made: "quotes", "checked", "generated", "corrected" (the
    # customer's own answer) or "abstained" (the fallback: it did not know).
    answer_kind: Mapped[str] = mapped_column(String(12), default="", server_default="")
    # True when the answer stopped at the response cap: shown with a marker.
    cut_off: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    rating: Mapped[int | None] = mapped_column(SmallInteger, default=None)  # +1 or -1
    rated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class AssistantDay(Base):
    """What an assistant reserved and spent on one day of its account's time zone.

    Its daily token cap counts these: a turn adds what it reserves, and gives
    back what it did not use when it settles, under the account's lock.
    """

    __tablename__ = "assistant_days"

    assistant_id: Mapped[int] = mapped_column(ForeignKey("assistants.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
