"""Endpoints the customer registered, the events that happened, and each delivery's log."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(200), default="")
    # The event types it receives, comma-separated, or "*" for every type.
    events: Mapped[str] = mapped_column(String(400), default="*")
    enabled: Mapped[bool] = mapped_column(default=True)
    # When the owner last turned it back on; None: on since it was made. A run of
    # failures that turns it off (``webhooks.disabling``) is counted from here at most.
    enabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Why and when Chatmeter turned it off itself (every delivery failed for days);
    # None while it is on, or when the owner turned it off.
    disabled_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The signing secret, which the server needs in full to sign; after a rotation the
    # previous one signs too (a second ``v1``) until ``previous_secret_until``.
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100), default=None)
    previous_secret_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class WebhookEvent(Base):
    """Something that happened to an account, as its receivers get it.

    Recorded whether or not an endpoint listens (``balance.restored`` needs to know
    that the account was told it ran dry); ``body`` is the JSON sent, fixed when the
    event happened, so every attempt of every delivery sends the same bytes.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_account_type", "account_id", "type", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(40))
    # One event per cause (a notice, an invoice, an assistant's month): a second is a no-op.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # gave up after the last attempt; the owner may send it again


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(default=None)  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # When the owner last asked to send it again ("Send again" is rate-limited).
    resent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
