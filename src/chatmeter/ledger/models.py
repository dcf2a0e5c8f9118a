"""Tables of the token ledger.

``token_balances`` holds one row per account: the row every writer locks, and
a cache of what the entries add up to. ``ledger_entries`` is append-only (a
database trigger refuses UPDATE and DELETE); ``chatmeter ledger verify``
recomputes the balances from it.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class GrantSource(StrEnum):
    RENEWAL = "renewal"
    PURCHASE = "purchase"
    FREE = "free"
    ADJUSTMENT = "adjustment"


class HoldStatus(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"


class HoldOwner(StrEnum):
    """Who may finish a hold: the API caller who made it, or the chat turn that made it.

    A chat turn's hold is the turn's own: it settles itself with what the model
    generated, so no API call can settle, release or extend it.
    """

    API = "api"
    CHAT = "chat"


class EntryKind(StrEnum):
    GRANT = "grant"
    DEBIT = "debit"
    RESERVE = "reserve"
    SETTLE = "settle"
    RELEASE = "release"
    HOLD_EXPIRY = "hold_expiry"
    GRANT_EXPIRY = "grant_expiry"


class Balance(Base):
    __tablename__ = "token_balances"
    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    # The month whose tokens the account holds (``YYYY-MM`` in its time zone)
    # and what was granted for it: the "limit" the 20% rule refers to.
    period: Mapped[str | None] = mapped_column(String(7), default=None)
    period_granted: Mapped[int] = mapped_column(BigInteger, default=0)
    low_armed: Mapped[bool] = mapped_column(default=True)
    depleted_armed: Mapped[bool] = mapped_column(default=True)
    notice_seq: Mapped[int] = mapped_column(default=0)
    last_entry_id: Mapped[int | None] = mapped_column(BigInteger, default=None)

    @property
    def balance(self) -> int:
        """Tokens not yet spent: what is available plus what running chats hold."""
        return self.available + self.reserved


class Grant(Base):
    __tablename__ = "token_grants"
    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        Index("ix_token_grants_live", "account_id", "expired_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str | None] = mapped_column(String(7), default=None)
    # The last month its tokens may be spent in, when they roll over past ``period``
    # (``CHATMETER_ROLLOVER_MONTHS``); None: ``period`` itself.
    last_period: Mapped[str | None] = mapped_column(String(7), default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    expired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), default=None)
    memo: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Hold(Base):
    __tablename__ = "token_holds"
    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_token_holds_due", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str] = mapped_column(String(8), default=HoldOwner.API, server_default="api")
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.PENDING)
    context_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    generation_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The time to live asked for (a retry must ask the same); ``expires_at`` moves on
    # while a live chat turn extends the hold.
    ttl_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    @property
    def consumed(self) -> int:
        return (self.context_tokens or 0) + (self.generation_tokens or 0)


class HoldAllocation(Base):
    """Which grants a hold took its tokens from, so unused ones go back where they came."""

    __tablename__ = "token_hold_allocations"

    hold_id: Mapped[int] = mapped_column(ForeignKey("token_holds.id"), primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("token_grants.id"), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_account", "account_id", "id"),
        # This month's use (every panel page) and a range's (the usage page) read
        # an account's entries by time.
        Index("ix_ledger_entries_account_created", "account_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    available_delta: Mapped[int] = mapped_column(BigInteger)
    reserved_delta: Mapped[int] = mapped_column(BigInteger, default=0)
    available_after: Mapped[int] = mapped_column(BigInteger)
    reserved_after: Mapped[int] = mapped_column(BigInteger)
    # Where the tokens went: spent by a chat (split by kind), or expired.
    consumed: Mapped[int] = mapped_column(BigInteger, default=0)
    context_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    generation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    expired: Mapped[int] = mapped_column(BigInteger, default=0)
    grant_id: Mapped[int | None] = mapped_column(ForeignKey("token_grants.id"), default=None)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("token_holds.id"), default=None)
    memo: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    @property
    def balance_after(self) -> int:
        return self.available_after + self.reserved_after


# Entries are facts: the database itself refuses to change or delete them.
APPEND_ONLY_DDL = {
    "sqlite": [
        f"""CREATE TRIGGER ledger_entries_no_{verb.lower()} BEFORE {verb} ON ledger_entries
        BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"""
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        """CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ledger_entries is append-only'; END $$""",
        """CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()""",
    ],
}

for _dialect, _statements in APPEND_ONLY_DDL.items():
    for _statement in _statements:
        event.listen(
            LedgerEntry.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect)
        )
