"""Assistants: what a customer builds, trains and embeds on a website."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class Assistant(Base):
    __tablename__ = "assistants"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    instructions: Mapped[str] = mapped_column(Text, default="")
    provider: Mapped[str] = mapped_column(String(20), default="local")
    model: Mapped[str] = mapped_column(String(100), default="")
    temperature: Mapped[float] = mapped_column(Float, default=0.2)
    max_tokens: Mapped[int] = mapped_column(Integer, default=160)
    passages: Mapped[int] = mapped_column(Integer, default=3)
    context_budget: Mapped[int] = mapped_column(Integer, default=400)
    welcome_message: Mapped[str] = mapped_column(String(500), default="")
    widget_title: Mapped[str] = mapped_column(String(60), default="")
    widget_color: Mapped[str] = mapped_column(String(7), default="#2563eb")
    widget_position: Mapped[str] = mapped_column(String(5), default="right")
    # The customer's own wording of the widget's texts, a JSON object by key
    # (``widget_texts.KEYS``); a key left out takes the visitor's language's default.
    widget_texts: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    # "auto" follows the visitor's light or dark preference; "light" or "dark" fixes it.
    widget_theme: Mapped[str] = mapped_column(String(5), default="auto", server_default="auto")
    # Abuse limits: tokens per day of the account's time zone, turns per conversation
    # (0: none), and what visitors see of the sources ("none", "names", "passages").
    daily_token_cap: Mapped[int] = mapped_column(Integer, default=100_000, server_default="100000")
    # Tokens per calendar month of the account's time zone (0: none), within the shared
    # balance (``chat.caps``). ``monthly_cap_set_on`` is the local day the cap was last
    # changed and ``monthly_cap_used_then`` the month's tokens at that moment (read under
    # the balance lock): ``ledger verify`` allows a month that far above a lowered cap.
    monthly_token_cap: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    monthly_cap_set_on: Mapped[dt.date | None] = mapped_column(Date, default=None)
    monthly_cap_used_then: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    turns_per_conversation: Mapped[int] = mapped_column(Integer, default=50, server_default="50")
    show_sources: Mapped[str] = mapped_column(String(8), default="names", server_default="names")
    # Website domains the widget may run on, one per line ("example.com", "*.example.com").
    allowed_domains: Mapped[str] = mapped_column(Text, default="")
    # How answers are made (``chatmeter.answers.modes``): "quotes" (the documents'
    # best-supported sentences, quoted), "checked" (the model writes, sentences the
    # passages do not support are dropped) or "generated" (the model writes freely).
    answer_mode: Mapped[str] = mapped_column(String(12), default="quotes", server_default="quotes")
    # What the assistant says when it does not know; "" names the account's contact email.
    fallback_message: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # Bumped whenever the training files change, so every process knows its
    # in-memory search index is stale.
    index_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    @property
    def domains(self) -> list[str]:
        return [d for d in self.allowed_domains.split("\n") if d]

    @property
    def texts(self) -> dict[str, str]:
        """The customer's own wording of the widget's texts (``widget_texts``), by key."""
        try:
            stored = json.loads(self.widget_texts or "{}")
        except ValueError:
            return {}
        if not isinstance(stored, dict):
            return {}
        return {k: v for k, v in stored.items() if isinstance(k, str) and isinstance(v, str)}
