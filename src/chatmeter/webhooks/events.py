"""The events a customer's systems can receive, and how one is recorded.

``emit`` is called by whoever causes the event, in the transaction that causes it:
the event and one delivery per enabled endpoint that listens are written with it,
or not at all. Each event has a cause's key (a balance notice, an invoice, an
assistant's month), so the same cause never makes two events however often the code
that causes it runs; receivers de-duplicate what the network repeats by the event's
``id``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from enum import StrEnum
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from chatmeter.db import delete_batch, queue_work
from chatmeter.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent

ALL = "*"


class EventType(StrEnum):
    BALANCE_LOW = "balance.low"
    BALANCE_DEPLETED = "balance.depleted"
    BALANCE_RESTORED = "balance.restored"
    PURCHASE_PAID = "purchase.paid"
    INVOICE_REFUNDED = "invoice.refunded"
    RENEWAL_FAILED = "renewal.failed"
    ASSISTANT_CAP_REACHED = "assistant.cap_reached"
    USAGE_SURGE = "usage.surge"
    TEST = "test"  # "Send test event": only to the endpoint it was sent from


# What each type means, as the panel, the API and the README say it.
DESCRIPTIONS: dict[EventType, str] = {
    EventType.BALANCE_LOW: "The balance fell below 20% of this month's tokens.",
    EventType.BALANCE_DEPLETED: "The balance reached zero: assistants are unavailable.",
    EventType.BALANCE_RESTORED: "Tokens came back after the balance reached zero.",
    EventType.PURCHASE_PAID: "A purchase or an auto top-up was paid and its tokens granted.",
    EventType.INVOICE_REFUNDED: "A paid invoice was refunded, in full or in part.",
    EventType.RENEWAL_FAILED: "The monthly renewal's charge failed.",
    EventType.ASSISTANT_CAP_REACHED: "An assistant reached its daily or monthly token cap.",
    EventType.USAGE_SURGE: "An assistant used far more tokens today than on a typical day.",
    EventType.TEST: "Sent with “Send test event”; changes nothing.",
}
SUBSCRIBABLE = tuple(t for t in EventType if t is not EventType.TEST)


def new_public_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def envelope(
    *, public_id: str, type: str, account_id: int, created: dt.datetime, data: dict[str, Any]
) -> str:
    """The JSON every receiver gets, serialised once (the signature covers these bytes)."""
    return json.dumps(
        {
            "id": public_id,
            "type": type,
            "created": created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "account_id": account_id,
            "data": data,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def listens(endpoint: WebhookEndpoint, type: str) -> bool:
    if type == EventType.TEST:
        return False  # a test event goes only where it was asked for
    return endpoint.events == ALL or type in endpoint.events.split(",")


def emit(
    session: Session,
    *,
    account_id: int,
    type: EventType,
    key: str,
    data: dict[str, Any],
    now: dt.datetime,
) -> WebhookEvent | None:
    """Record the event of ``key`` and queue its deliveries; None if it was recorded before.

    Callers hold the account's balance lock (every cause does: it moved tokens or
    took it to decide), so the check-then-insert cannot race; the unique key is the
    backstop.
    """
    dedupe_key = f"{type}:{key}"
    if recorded(session, dedupe_key):
        return None
    event = record(
        session, account_id=account_id, type=type, dedupe_key=dedupe_key, data=data, now=now
    )
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.account_id == account_id, WebhookEndpoint.enabled.is_(True)
        )
    )
    for endpoint in endpoints:
        if listens(endpoint, type):
            queue_delivery(session, event=event, endpoint_id=endpoint.id, now=now)
    return event


def record(
    session: Session,
    *,
    account_id: int,
    type: str,
    dedupe_key: str,
    data: dict[str, Any],
    now: dt.datetime,
) -> WebhookEvent:
    public_id = new_public_id()
    event = WebhookEvent(
        public_id=public_id,
        account_id=account_id,
        type=type,
        dedupe_key=dedupe_key,
        body=envelope(
            public_id=public_id, type=type, account_id=account_id, created=now, data=data
        ),
        created_at=now,
    )
    session.add(event)
    session.flush()
    return event


def queue_delivery(
    session: Session, *, event: WebhookEvent, endpoint_id: int, now: dt.datetime
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        event_id=event.id,
        endpoint_id=endpoint_id,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    queue_work(session)  # the worker wakes once the transaction commits
    return delivery


def recorded(session: Session, dedupe_key: str) -> bool:
    """Whether the event of this cause (``<type>:<key>``) was recorded already."""
    found = session.scalar(select(WebhookEvent.id).where(WebhookEvent.dedupe_key == dedupe_key))
    return found is not None


_BALANCE_TURNS = [EventType.BALANCE_DEPLETED, EventType.BALANCE_RESTORED]


def last_balance_event(session: Session, *, account_id: int) -> str | None:
    """The type of the account's latest ``balance.depleted`` or ``balance.restored``."""
    return session.scalar(
        select(WebhookEvent.type)
        .where(
            WebhookEvent.account_id == account_id,
            WebhookEvent.type.in_(_BALANCE_TURNS),
        )
        .order_by(WebhookEvent.id.desc())
        .limit(1)
    )


def prune_deliveries(session: Session, *, before: dt.datetime, limit: int) -> int:
    """Forget at most ``limit`` deliveries made before ``before`` that are over (delivered,
    or given up on); pending ones stay, however old."""
    return delete_batch(
        session,
        WebhookDelivery,
        WebhookDelivery.status.in_([DeliveryStatus.DELIVERED, DeliveryStatus.DEAD]),
        WebhookDelivery.created_at < before,
        limit=limit,
    )


def prune_events(session: Session, *, before: dt.datetime, limit: int) -> int:
    """Forget at most ``limit`` events recorded before ``before`` that no delivery needs.

    Each account's latest ``balance.depleted`` or ``balance.restored`` stays, however
    old: it says which of the two the account was told last (``last_balance_event``).
    """
    later = aliased(WebhookEvent)
    latest_turn = (
        select(func.max(later.id))
        .where(later.account_id == WebhookEvent.account_id, later.type.in_(_BALANCE_TURNS))
        .scalar_subquery()
    )
    return delete_batch(
        session,
        WebhookEvent,
        WebhookEvent.created_at < before,
        ~exists().where(WebhookDelivery.event_id == WebhookEvent.id),
        or_(WebhookEvent.type.not_in(_BALANCE_TURNS), WebhookEvent.id < latest_turn),
        limit=limit,
    )
