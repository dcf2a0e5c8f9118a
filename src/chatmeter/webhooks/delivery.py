"""Post due deliveries to the customers' endpoints: at least once, with backoff.

The same scheme as the email outbox (``notifications.delivery``, whose lease and
backoff these are): a delivery is
claimed in a short transaction that counts the attempt and pushes its next attempt a
lease ahead (PostgreSQL skips rows another worker holds), posted outside any
transaction, and its outcome recorded only if the row is still as claimed. A worker
that dies mid-batch loses nothing: the lease runs out and the delivery is due again.

- A 2xx answer delivers it. Anything else (another status, a timeout, a refused
  connection, a destination ``egress`` refuses) is retried: 30 s after the first
  failure, doubling, at most an hour apart; after ``MAX_ATTEMPTS`` the delivery is
  dead, kept in the endpoint's log, and the owner may send it again. An endpoint
  whose deliveries have all failed for days is then turned off and its owner told
  (``disabling``).
- When an endpoint cannot be reached at all, its other deliveries in the batch are
  handed back untried, to wait as long as the one that failed: one dead endpoint
  costs one attempt per round, not one per event, and holds up no other customer.
- At least once: a crash after the receiver answered and before the outcome was
  recorded sends the delivery again, with the same event id for the receiver to
  drop the copy.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from chatmeter.config import Settings
from chatmeter.db import Database, rowcount
from chatmeter.notifications.delivery import LEASE, backoff
from chatmeter.webhooks import disabling, egress, signing
from chatmeter.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12  # about 6 hours of retries, as the outbox's (``backoff`` is its)
USER_AGENT = "Chatmeter-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Report:
    delivered: int = 0
    failed: int = 0  # will be retried
    dead: int = 0


@dataclass(frozen=True, slots=True)
class _Claim:
    id: int
    attempts: int  # the count written by our claim: proof that the row is still ours
    endpoint_id: int
    url: str
    secrets: tuple[str, ...]
    event_id: str
    event_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None
    error: str | None  # None: delivered
    reachable: bool  # False: the endpoint could not be reached at all


def deliver_due(db: Database, *, settings: Settings, now: dt.datetime, batch: int = 50) -> Report:
    """Post up to ``batch`` due deliveries; safe to run in several processes at once."""
    claims = _claim(db, now=now, batch=batch)
    if not claims:
        return Report()
    started = time.monotonic()
    delivered = failed = dead = 0
    unreachable: dict[int, dt.datetime] = {}  # endpoint → when its deliveries are due again
    for index, claim in enumerate(claims):
        if time.monotonic() - started > LEASE.total_seconds() / 2:
            _release(db, claims[index:], until=now)
            break
        if claim.endpoint_id in unreachable:
            _release(db, [claim], until=unreachable[claim.endpoint_id])
            continue
        outcome = post(claim, settings=settings, now=now)
        if outcome.error is None:
            _mark(db, claim, now=now, status=outcome.status)
            delivered += 1
            continue
        retry_at = now + backoff(claim.attempts)
        if _mark_failed(db, claim, outcome=outcome, now=now, retry_at=retry_at):
            dead += 1
        else:
            failed += 1
        if not outcome.reachable:
            unreachable[claim.endpoint_id] = retry_at
    return Report(delivered=delivered, failed=failed, dead=dead)


def post(claim: _Claim, *, settings: Settings, now: dt.datetime) -> Outcome:
    """One attempt: sign, post to the checked address, keep the first bytes of the answer."""
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Chatmeter-Event-Id": claim.event_id,
        "Chatmeter-Event-Type": claim.event_type,
        "Chatmeter-Delivery-Attempt": str(claim.attempts),
        signing.HEADER: signing.header(claim.secrets, timestamp, claim.body),
    }
    try:
        answer = egress.post(
            claim.url,
            body=claim.body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private_networks,
        )
    except (egress.Refused, egress.Failed) as exc:
        return Outcome(status=None, error=str(exc)[:500], reachable=False)
    if 200 <= answer.status < 300:
        return Outcome(status=answer.status, error=None, reachable=True)
    return Outcome(
        status=answer.status,
        error=f"HTTP {answer.status}: {answer.snippet}"[:500],
        reachable=True,
    )


def _claim(db: Database, *, now: dt.datetime, batch: int) -> list[_Claim]:
    with db.uow() as uow:
        statement = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(batch)
        )
        if db.is_postgres:
            statement = statement.with_for_update(skip_locked=True)
        rows = list(uow.session.scalars(statement))
        claims = []
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + LEASE
            endpoint = uow.session.get(WebhookEndpoint, row.endpoint_id)
            event = uow.session.get(WebhookEvent, row.event_id)
            assert endpoint is not None and event is not None
            claims.append(
                _Claim(
                    id=row.id,
                    attempts=row.attempts,
                    endpoint_id=endpoint.id,
                    url=endpoint.url,
                    secrets=_secrets(endpoint, now),
                    event_id=event.public_id,
                    event_type=event.type,
                    body=event.body.encode(),
                )
            )
        uow.commit()
    return claims


def _secrets(endpoint: WebhookEndpoint, now: dt.datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while a rotation's grace period lasts."""
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and until > now:
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


def _still_claimed(claim: _Claim) -> Any:
    return (
        (WebhookDelivery.id == claim.id)
        & (WebhookDelivery.attempts == claim.attempts)
        & (WebhookDelivery.status == DeliveryStatus.PENDING)
    )


def _mark(db: Database, claim: _Claim, *, now: dt.datetime, status: int | None) -> None:
    with db.uow() as uow:
        result = uow.session.execute(
            update(WebhookDelivery)
            .where(_still_claimed(claim))
            .values(
                status=DeliveryStatus.DELIVERED,
                delivered_at=now,
                last_attempt_at=now,
                last_status=status,
                last_error=None,
            )
        )
        uow.commit()
    if rowcount(result) == 0:
        log.warning("webhook delivery %s answered after its lease ran out", claim.id)


def _mark_failed(
    db: Database, claim: _Claim, *, outcome: Outcome, now: dt.datetime, retry_at: dt.datetime
) -> bool:
    """Record the failure and schedule the retry; True when the delivery is now dead."""
    dead = claim.attempts >= MAX_ATTEMPTS
    values: dict[str, Any] = {
        "last_error": outcome.error,
        "last_status": outcome.status,
        "last_attempt_at": now,
    }
    if dead:
        values["status"] = DeliveryStatus.DEAD
        log.warning("webhook delivery %s is dead after %s attempts", claim.id, claim.attempts)
    else:
        values["next_attempt_at"] = retry_at
    with db.uow() as uow:
        result = uow.session.execute(
            update(WebhookDelivery).where(_still_claimed(claim)).values(**values)
        )
        if dead and rowcount(result) == 1:
            disabling.turn_off_if_failing(
                uow.session, endpoint_id=claim.endpoint_id, last_error=outcome.error, now=now
            )
        uow.commit()
    return dead


def _release(db: Database, claims: Sequence[_Claim], *, until: dt.datetime) -> None:
    """Hand back claims that were not tried: the attempt does not count."""
    with db.uow() as uow:
        for claim in claims:
            uow.session.execute(
                update(WebhookDelivery)
                .where(_still_claimed(claim))
                .values(attempts=claim.attempts - 1, next_attempt_at=until)
            )
        uow.commit()
