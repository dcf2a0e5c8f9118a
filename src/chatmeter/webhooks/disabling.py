"""An endpoint that has failed for days turns itself off, and its owner is told.

Stripe's practice: a receiver that is gone for good would otherwise run every new
event through the whole retry schedule, and nobody would learn that the integration
is broken. When a delivery dies (``delivery._mark_failed``), its endpoint is turned
off if every delivery tried since the endpoint last worked has failed, and the first
of those failures is at least ``DISABLE_AFTER`` old. "Last worked" is its newest
delivered delivery, or when it was made or last turned back on if that is later.

An endpoint that was idle and then failed for an hour is failing for an hour, not for
the days it was idle: the run starts at the first failed delivery's creation (or its
"Send again"), not at the last success.

Turning it off is one conditional UPDATE (``WHERE enabled``, and not turned back on
meanwhile) in the transaction that marks the delivery dead, with the email in the
same transaction: two workers burying two deliveries at once turn it off once and
write one email. Its pending deliveries keep their schedule; new events are not
queued for it, as for any endpoint that is off.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.db import rowcount
from chatmeter.notifications.outbox import enqueue
from chatmeter.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

DISABLE_AFTER = dt.timedelta(days=3)
EMAIL_KIND = "webhook_disabled"


def failing_since(session: Session, endpoint: WebhookEndpoint) -> dt.datetime | None:
    """When the endpoint's current run of failures began; None if nothing failed since it
    last worked."""
    worked = endpoint.enabled_at or endpoint.created_at
    delivered = session.scalar(
        select(func.max(WebhookDelivery.delivered_at)).where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.DELIVERED,
        )
    )
    if delivered is not None:
        worked = max(worked, delivered)
    first = session.scalar(
        select(
            func.min(func.coalesce(WebhookDelivery.resent_at, WebhookDelivery.created_at))
        ).where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status != DeliveryStatus.DELIVERED,
            WebhookDelivery.last_attempt_at >= worked,
        )
    )
    return None if first is None else max(worked, first)


def turn_off_if_failing(
    session: Session,
    *,
    endpoint_id: int,
    last_error: str | None,
    now: dt.datetime,
) -> bool:
    """Turn the endpoint off and email its owner if it has failed for ``DISABLE_AFTER``;
    True when this call did (at most one caller ever does for one run of failures)."""
    endpoint = session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    if endpoint is None or not endpoint.enabled:
        return False
    since = failing_since(session, endpoint)
    if since is None or now - since < DISABLE_AFTER:
        return False
    days = (now - since).days
    error = last_error or "no answer"
    reason = f"every delivery failed for {days} days (last error: {error})"[:500]
    result = session.execute(
        update(WebhookEndpoint)
        .where(
            WebhookEndpoint.id == endpoint.id,
            WebhookEndpoint.enabled.is_(True),
            _not_turned_on_since(endpoint.enabled_at),
        )
        .values(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        return False  # another worker turned it off, or the owner changed it meanwhile
    _tell_owner(session, endpoint=endpoint, since=since, error=error, now=now)
    return True


def _not_turned_on_since(enabled_at: dt.datetime | None) -> ColumnElement[bool]:
    """The owner has not turned it off and on again since we read it."""
    column = WebhookEndpoint.enabled_at
    return column.is_(None) if enabled_at is None else column == enabled_at


def _tell_owner(
    session: Session,
    *,
    endpoint: WebhookEndpoint,
    since: dt.datetime,
    error: str,
    now: dt.datetime,
) -> None:
    account = session.get(Account, endpoint.account_id)
    assert account is not None
    enqueue(
        session,
        kind=EMAIL_KIND,
        dedupe_key=f"{EMAIL_KIND}:{endpoint.id}:{now.isoformat()}",
        to=account.contact_email,
        now=now,
        account_id=account.id,
        context={
            "account_name": account.name,
            "endpoint_id": endpoint.id,
            "url": endpoint.url,
            "description": endpoint.description,
            "failing_since": since.isoformat(),
            "days": (now - since).days,
            "last_error": error,
        },
    )
