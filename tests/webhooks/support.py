"""Webhook endpoints and events for tests, on a context that may reach loopback."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from chatmeter.context import Context
from chatmeter.webhooks import delivery, endpoints
from chatmeter.webhooks.events import EventType, emit
from chatmeter.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.support.context import derived


def on_loopback(ctx: Context) -> Context:
    """The operator's setting on: the tests' receiver lives on 127.0.0.1."""
    return derived(ctx, webhook_allow_private_networks=True, webhook_timeout_seconds=5.0)


def add_endpoint(
    ctx: Context, account_id: int, url: str, *, events: list[str] | None = None
) -> WebhookEndpoint:
    with ctx.db.uow() as uow:
        endpoint = endpoints.create(
            uow.session,
            account_id=account_id,
            url=url,
            events=events,
            allow_private=True,
            now=ctx.clock.now(),
        )
        uow.commit()
        uow.session.expunge(endpoint)
        return endpoint


def happen(
    ctx: Context, account_id: int, key: str, type: EventType = EventType.BALANCE_LOW
) -> None:
    with ctx.db.uow() as uow:
        emit(
            uow.session,
            account_id=account_id,
            type=type,
            key=key,
            data={"key": key},
            now=ctx.clock.now(),
        )
        uow.commit()


def deliver(ctx: Context, **kwargs: Any) -> delivery.Report:
    return delivery.deliver_due(ctx.db, settings=ctx.settings, now=ctx.clock.now(), **kwargs)


def deliveries(ctx: Context) -> list[WebhookDelivery]:
    with ctx.db.read() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def events_of(ctx: Context, type: str | None = None) -> list[dict[str, Any]]:
    """The recorded events' bodies, oldest first."""
    with ctx.db.read() as session:
        query = select(WebhookEvent).order_by(WebhookEvent.id)
        if type is not None:
            query = query.where(WebhookEvent.type == type)
        return [json.loads(e.body) for e in session.scalars(query)]
