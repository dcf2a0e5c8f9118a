"""Subscriptions (how many packages renew each month) and invoices."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class InvoiceKind(StrEnum):
    PURCHASE = "purchase"
    RENEWAL = "renewal"


class InvoiceStatus(StrEnum):
    OPEN = "open"  # created, not yet sent to the gateway or awaiting its answer
    PENDING = "pending"  # the gateway has it; confirmation comes later
    PAID = "paid"
    FAILED = "failed"
    VOID = "void"


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        CheckConstraint("next_quantity IS NULL OR next_quantity >= 0", name="next_not_negative"),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(default=0)
    # A change of quantity the customer asked for; it applies at the next renewal.
    next_quantity: Mapped[int | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.ACTIVE)
    # The last month (``YYYY-MM`` in the account's zone) whose renewal is done.
    renewed_period: Mapped[str | None] = mapped_column(String(7), default=None)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    @property
    def renewing_quantity(self) -> int:
        """Packages the next renewal grants and charges."""
        if self.status == SubscriptionStatus.CANCELLED:
            return 0
        return self.quantity if self.next_quantity is None else self.next_quantity


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("account_id", "key"),
        CheckConstraint("packages >= 0", name="packages_not_negative"),
        CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        Index("ix_invoices_retry", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # ``renewal:YYYY-MM`` for renewals (one per month), the client's
    # Idempotency-Key for purchases.
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(7))
    packages: Mapped[int] = mapped_column()
    package_tokens: Mapped[int] = mapped_column(BigInteger)
    free_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.OPEN)
    gateway: Mapped[str] = mapped_column(String(32))
    gateway_reference: Mapped[str | None] = mapped_column(String(200), default=None)
    failure_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    @property
    def tokens(self) -> int:
        return self.packages * self.package_tokens + self.free_tokens

    @property
    def number(self) -> str:
        return f"CM-{self.created_at:%Y}-{self.id:06d}"
