"""What an owner manages: endpoints, their secret, a test event, the delivery log.

Every function takes the caller's account and finds only that account's endpoints
and deliveries: another account's id is "no such endpoint". The panel, the REST API
and the CLI call these, so they share one set of rules and messages.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from chatmeter.db import queue_work
from chatmeter.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, RateLimited
from chatmeter.webhooks import egress
from chatmeter.webhooks.events import ALL, SUBSCRIBABLE, EventType, queue_delivery, record
from chatmeter.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

MAX_ENDPOINTS = 10
MAX_DESCRIPTION = 200
# "Send test event" and "Send again" together, at most this often per endpoint and
# hour: each is a request this server makes on the owner's behalf.
MANUAL_SENDS_PER_HOUR = 10
# After a rotation the old secret signs too for this long, so receivers can switch.
ROTATION_GRACE = dt.timedelta(hours=24)
LOG_LENGTH = 50


def parse_events(value: str | Iterable[str] | None) -> str:
    """``*`` or the chosen types, comma-separated in catalogue order; unknown ones refused."""
    if value is None:
        return ALL
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)
    names = [name for name in names if name]
    if not names or ALL in names:
        return ALL
    known = {t.value for t in SUBSCRIBABLE}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidInput(
            f"Unknown event type {unknown[0]!r}; choose from {', '.join(sorted(known))}.",
            field="events",
        )
    chosen = [t.value for t in SUBSCRIBABLE if t.value in names]
    return ALL if len(chosen) == len(SUBSCRIBABLE) else ",".join(chosen)


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def list_endpoints(session: Session, *, account_id: int) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.account_id == account_id)
            .order_by(WebhookEndpoint.id)
        )
    )


def get(session: Session, *, account_id: int, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.account_id != account_id:
        raise NotFound("no such webhook endpoint", endpoint_id=endpoint_id)
    return endpoint


def create(
    session: Session,
    *,
    account_id: int,
    url: str,
    events: str | Iterable[str] | None,
    description: str = "",
    allow_private: bool,
    now: dt.datetime,
) -> WebhookEndpoint:
    count = session.scalar(select(func.count()).where(WebhookEndpoint.account_id == account_id))
    if (count or 0) >= MAX_ENDPOINTS:
        raise QuotaExceeded(
            f"An account may have {MAX_ENDPOINTS} webhook endpoints; remove one first."
        )
    endpoint = WebhookEndpoint(
        account_id=account_id,
        url=egress.check_url(url, allow_private=allow_private),
        description=_description(description),
        events=parse_events(events),
        enabled=True,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def update(
    session: Session,
    *,
    account_id: int,
    endpoint_id: int,
    allow_private: bool,
    now: dt.datetime,
    url: str | None = None,
    events: str | Iterable[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    endpoint = get(session, account_id=account_id, endpoint_id=endpoint_id)
    if url is not None:
        endpoint.url = egress.check_url(url, allow_private=allow_private)
    if events is not None:
        endpoint.events = parse_events(events)
    if description is not None:
        endpoint.description = _description(description)
    if enabled is not None:
        _turn(endpoint, on=enabled, now=now)
    endpoint.updated_at = now
    return endpoint


def _turn(endpoint: WebhookEndpoint, *, on: bool, now: dt.datetime) -> None:
    """Turning it back on forgets why it was off and starts a new count of failures
    (``disabling``); turning it off keeps Chatmeter's reason if it was off already."""
    if on and not endpoint.enabled:
        endpoint.enabled_at = now
        endpoint.disabled_reason = endpoint.disabled_at = None
    endpoint.enabled = on


def remove(session: Session, *, account_id: int, endpoint_id: int) -> None:
    """Delete the endpoint and its delivery log; its pending deliveries are not sent."""
    endpoint = get(session, account_id=account_id, endpoint_id=endpoint_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.delete(endpoint)


def rotate_secret(
    session: Session, *, account_id: int, endpoint_id: int, now: dt.datetime
) -> WebhookEndpoint:
    """A new secret; the old one signs too for ``ROTATION_GRACE``."""
    endpoint = get(session, account_id=account_id, endpoint_id=endpoint_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_GRACE
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    return endpoint


def send_test(
    session: Session, *, account_id: int, endpoint_id: int, now: dt.datetime
) -> WebhookEvent:
    """A ``test`` event delivered to this endpoint only (even when it is turned off)."""
    endpoint = get(session, account_id=account_id, endpoint_id=endpoint_id)
    _check_manual_sends(session, endpoint.id, now)
    event = record(
        session,
        account_id=account_id,
        type=EventType.TEST,
        dedupe_key=f"test:{endpoint.id}:{secrets.token_hex(8)}",
        data={"endpoint_id": endpoint.id, "message": "A test event from Chatmeter."},
        now=now,
    )
    queue_delivery(session, event=event, endpoint_id=endpoint.id, now=now)
    return event


def _check_manual_sends(session: Session, endpoint_id: int, now: dt.datetime) -> None:
    """``RateLimited`` once the owner asked for ``MANUAL_SENDS_PER_HOUR`` sends this hour."""
    since = now - dt.timedelta(hours=1)
    tests = session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookEvent.type == EventType.TEST,
            WebhookEvent.created_at > since,
        )
    )
    resent = session.scalar(
        select(func.count()).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.resent_at > since
        )
    )
    if (tests or 0) + (resent or 0) >= MANUAL_SENDS_PER_HOUR:
        raise RateLimited(
            f"At most {MANUAL_SENDS_PER_HOUR} test events and sends again an hour per "
            "endpoint; try again later."
        )


def deliveries(
    session: Session, *, account_id: int, endpoint_id: int, limit: int = LOG_LENGTH
) -> list[dict[str, Any]]:
    """The endpoint's newest deliveries, each with its event: the delivery log."""
    endpoint = get(session, account_id=account_id, endpoint_id=endpoint_id)
    rows = session.execute(
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [delivery_dict(d, e) for d, e in rows]


def resend(
    session: Session, *, account_id: int, endpoint_id: int, delivery_id: int, now: dt.datetime
) -> dict[str, Any]:
    """Send a finished delivery again (a failed one, or one the receiver lost), with a
    fresh set of attempts; one still being tried is ``Conflict``."""
    endpoint = get(session, account_id=account_id, endpoint_id=endpoint_id)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != endpoint.id:
        raise NotFound("no such delivery", delivery_id=delivery_id)
    if row.status == DeliveryStatus.PENDING:
        raise Conflict("This delivery is still being tried; send it again once it has ended.")
    _check_manual_sends(session, endpoint.id, now)
    row.status, row.attempts, row.next_attempt_at, row.resent_at = (
        DeliveryStatus.PENDING,
        0,
        now,
        now,
    )
    queue_work(session)
    event = session.get(WebhookEvent, row.event_id)
    assert event is not None
    return delivery_dict(row, event)


def endpoint_dict(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": [ALL] if endpoint.events == ALL else endpoint.events.split(","),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": endpoint.disabled_at,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }
    if with_secret:
        shown["secret"] = endpoint.secret
    return shown


def delivery_dict(row: WebhookDelivery, event: WebhookEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": event.public_id,
        "event_type": event.type,
        "status": row.status,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "last_attempt_at": row.last_attempt_at,
        "next_attempt_at": row.next_attempt_at if row.status == "pending" else None,
        "delivered_at": row.delivered_at,
        "created_at": row.created_at,
    }


def _description(value: str) -> str:
    value = value.strip()
    if len(value) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"The description is longer than {MAX_DESCRIPTION} characters.", field="description"
        )
    return value
