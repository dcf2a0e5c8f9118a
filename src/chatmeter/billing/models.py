"""Subscriptions (how many packages renew each month) and invoices."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class InvoiceKind(StrEnum):
    PURCHASE = "purchase"  # packages bought now; they also join the monthly subscription
    RENEWAL = "renewal"
    TOPUP = "top-up"  # packages bought by auto top-up: this month only, never renewed


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
    # Months its packages' unused tokens stay usable after its own (fixed when it is
    # made, from ``CHATMETER_ROLLOVER_MONTHS``); the free tokens never roll over.
    rollover_months: Mapped[int] = mapped_column(default=0, server_default="0")
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    # What is charged: packages × unit price, plus ``tax_cents`` (``tax_rate`` percent of it,
    # as a decimal string, fixed on the invoice when it is made).
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    tax_rate: Mapped[str] = mapped_column(String(8), default="0")
    tax_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.OPEN)
    gateway: Mapped[str] = mapped_column(String(32))
    gateway_reference: Mapped[str | None] = mapped_column(String(200), default=None)
    failure_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    # The gateway's hosted payment page for this invoice (a Stripe Checkout session), if any.
    checkout_reference: Mapped[str | None] = mapped_column(String(200), default=None)
    # Refunded so far, and when the last refund was written: in full once it reaches
    # ``amount_cents`` (``billing.refunds``).
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Who it is from and to, as at its issue (``billing.parties``, JSON); None on invoices
    # issued before 2026-12-07, which show the parties as they are now.
    parties: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def tokens(self) -> int:
        return self.packages * self.package_tokens + self.free_tokens

    @property
    def number(self) -> str:
        return f"CM-{self.created_at:%Y}-{self.id:06d}"


class BillingProfile(Base):
    """Who the account is on its invoices, and the card its gateway keeps for it.

    One row per account, made when first needed. The card is a reference into the
    gateway (a Stripe PaymentMethod) and what the billing page shows of it: never the
    number.
    """

    __tablename__ = "billing_profiles"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    billing_name: Mapped[str] = mapped_column(String(200), default="")
    billing_address: Mapped[str] = mapped_column(Text, default="")
    tax_id: Mapped[str] = mapped_column(String(64), default="")
    # The gateway that knows this customer, and its reference for it (a Stripe Customer).
    gateway: Mapped[str] = mapped_column(String(32), default="")
    customer_reference: Mapped[str | None] = mapped_column(String(200), default=None)
    card_reference: Mapped[str | None] = mapped_column(String(200), default=None)
    card_brand: Mapped[str] = mapped_column(String(32), default="")
    card_last4: Mapped[str] = mapped_column(String(4), default="")
    card_exp_month: Mapped[int | None] = mapped_column(default=None)
    card_exp_year: Mapped[int | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)


class AutoTopUp(Base):
    """Buy ``packages`` when available tokens fall below ``threshold``, at most
    ``monthly_cap`` times per calendar month of the account.

    ``armed`` is cleared by the crossing that starts a top-up (under the balance's
    lock, so concurrent turns start exactly one) and set again once the balance is
    back at or above the threshold.
    """

    __tablename__ = "auto_topups"
    __table_args__ = (
        CheckConstraint("threshold >= 0", name="topup_threshold_not_negative"),
        CheckConstraint("packages >= 1", name="topup_packages_positive"),
        CheckConstraint("monthly_cap >= 1", name="topup_cap_positive"),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold: Mapped[int] = mapped_column(BigInteger, default=1000)
    packages: Mapped[int] = mapped_column(default=1)
    monthly_cap: Mapped[int] = mapped_column(default=3)
    armed: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why it turned itself off (a declined charge); None while on or turned off by hand.
    disabled_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)


class GatewayEvent(Base):
    """A gateway's webhook event, recorded in the transaction that applies it: at most once."""

    __tablename__ = "gateway_events"

    gateway: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
