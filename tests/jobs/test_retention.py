"""The retention job forgets what is over and older than CHATMETER_RETENTION_DAYS, and
nothing else: pending work, each account's latest balance turn, and recent rows stay."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event, select, update
from sqlalchemy.orm import ORMExecuteState, Session

from chatmeter.accounts.models import EmailLink, LinkPurpose
from chatmeter.billing.models import GatewayEvent
from chatmeter.config import Settings
from chatmeter.context import Context
from chatmeter.jobs import registry
from chatmeter.notifications.models import OutboxMessage, OutboxStatus
from chatmeter.webhooks import events
from chatmeter.webhooks.events import EventType
from chatmeter.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tests.support.accounts import new_account

_serial = itertools.count()


def run(ctx: Context) -> dict[str, Any]:
    return registry.JOBS["retention"].run(ctx)


def email(session: Session, account: int, status: str, at: dt.datetime) -> OutboxMessage:
    message = OutboxMessage(
        account_id=account,
        kind="purchase_receipt",
        dedupe_key=f"test:{next(_serial)}",
        to_address="owner@example.com",
        context="{}",
        status=status,
        attempts=1,
        next_attempt_at=at,
        created_at=at,
        sent_at=at if status == OutboxStatus.SENT else None,
    )
    session.add(message)
    session.flush()
    return message


def webhook_event(session: Session, account: int, type: str, at: dt.datetime) -> WebhookEvent:
    row = WebhookEvent(
        public_id=f"evt_{next(_serial)}",
        account_id=account,
        type=type,
        dedupe_key=f"{type}:{next(_serial)}",
        body="{}",
        created_at=at,
    )
    session.add(row)
    session.flush()
    return row


def delivery(
    session: Session, endpoint: WebhookEndpoint, row: WebhookEvent, status: str
) -> WebhookDelivery:
    sent = WebhookDelivery(
        event_id=row.id,
        endpoint_id=endpoint.id,
        status=status,
        attempts=1,
        next_attempt_at=row.created_at,
        created_at=row.created_at,
    )
    session.add(sent)
    session.flush()
    return sent


def link(
    session: Session, account: int, *, expires: dt.datetime, used: dt.datetime | None
) -> EmailLink:
    row = EmailLink(
        purpose=LinkPurpose.INVITE,
        token_hash=f"{next(_serial):064d}",
        account_id=account,
        email="new@example.com",
        role="member",
        expires_at=expires,
        used_at=used,
        created_at=expires - dt.timedelta(days=7),
    )
    session.add(row)
    session.flush()
    return row


def remaining(ctx: Context, model: Any) -> set[Any]:
    with ctx.db.read() as session:
        if model is GatewayEvent:
            return set(session.scalars(select(GatewayEvent.event_id)))
        return set(session.scalars(select(model.id)))


def test_it_forgets_what_is_over_and_old_and_keeps_the_rest(ctx: Context) -> None:
    assert ctx.settings.retention_days == 90
    first = new_account(ctx, email="first@example.com")
    second = new_account(ctx, email="second@example.com")
    now = ctx.clock.now()
    old, recent = now - dt.timedelta(days=91), now - dt.timedelta(days=89)
    with ctx.db.uow() as uow:
        s = uow.session
        # The accounts' own emails (a welcome, a confirmation) are recent: they stay.
        emails_before = set(s.scalars(select(OutboxMessage.id)))
        gone_emails = {email(s, first, OutboxStatus.SENT, old).id}
        gone_emails.add(email(s, first, OutboxStatus.DEAD, old).id)
        kept_emails = {email(s, first, OutboxStatus.PENDING, old).id}  # still to send
        kept_emails.add(email(s, first, OutboxStatus.SENT, recent).id)

        endpoint = WebhookEndpoint(
            account_id=first, url="https://hooks.example.com/", secret="s" * 40, created_at=old
        )
        endpoint.updated_at = old
        s.add(endpoint)
        s.flush()
        delivered = webhook_event(s, first, EventType.PURCHASE_PAID, old)
        dead = webhook_event(s, first, EventType.RENEWAL_FAILED, old)
        retrying = webhook_event(s, first, EventType.USAGE_SURGE, old)
        gone_deliveries = {delivery(s, endpoint, delivered, DeliveryStatus.DELIVERED).id}
        gone_deliveries.add(delivery(s, endpoint, dead, DeliveryStatus.DEAD).id)
        kept_deliveries = {delivery(s, endpoint, retrying, DeliveryStatus.PENDING).id}
        unheard = webhook_event(s, first, EventType.BALANCE_LOW, old)  # no endpoint listened
        told_dry = webhook_event(s, first, EventType.BALANCE_DEPLETED, old)
        told_back = webhook_event(s, first, EventType.BALANCE_RESTORED, old)  # first's latest
        only_turn = webhook_event(s, second, EventType.BALANCE_DEPLETED, old)  # second's latest
        fresh = webhook_event(s, first, EventType.PURCHASE_PAID, recent)
        kept_deliveries.add(delivery(s, endpoint, fresh, DeliveryStatus.DELIVERED).id)
        gone_events = {delivered.id, dead.id, unheard.id, told_dry.id}
        kept_events = {retrying.id, told_back.id, only_turn.id, fresh.id}

        for name, at in (("evt_old", old), ("evt_recent", recent)):
            s.add(GatewayEvent(gateway="stripe", event_id=name, type="x", received_at=at))

        links_before = set(s.scalars(select(EmailLink.id)))
        gone_links = {link(s, first, expires=old + dt.timedelta(days=1), used=old).id}
        gone_links.add(link(s, first, expires=old, used=None).id)  # expired unused
        kept_links = {link(s, first, expires=now + dt.timedelta(days=1), used=None).id}
        kept_links.add(link(s, first, expires=now, used=recent).id)
        uow.commit()
    told = {a: _last_turn(ctx, a) for a in (first, second)}
    assert told == {first: EventType.BALANCE_RESTORED, second: EventType.BALANCE_DEPLETED}

    assert run(ctx) == {
        "emails": 2,
        "webhook_deliveries": 2,
        "webhook_events": 4,
        "stripe_events": 1,
        "links": 2,
    }
    assert remaining(ctx, OutboxMessage) == emails_before | kept_emails
    assert remaining(ctx, WebhookDelivery) == kept_deliveries
    assert remaining(ctx, WebhookEvent) == kept_events
    assert remaining(ctx, GatewayEvent) == {"evt_recent"}
    assert remaining(ctx, EmailLink) == links_before | kept_links
    assert not gone_emails & remaining(ctx, OutboxMessage)
    assert not gone_deliveries & remaining(ctx, WebhookDelivery)
    assert not gone_events & remaining(ctx, WebhookEvent)
    assert not gone_links & remaining(ctx, EmailLink)
    # What the account was told last is still known.
    assert {a: _last_turn(ctx, a) for a in (first, second)} == told
    assert set(run(ctx).values()) == {0}  # a second run finds nothing

    # Time passes: the rest follows once it is as old, pending work and latest turns aside.
    ctx.clock.advance(days=2)
    assert run(ctx) == {
        "emails": 1,
        "webhook_deliveries": 1,
        "webhook_events": 1,
        "stripe_events": 1,
        "links": 1,
    }
    assert remaining(ctx, WebhookEvent) == {retrying.id, told_back.id, only_turn.id}


def _last_turn(ctx: Context, account: int) -> str | None:
    with ctx.db.read() as session:
        return events.last_balance_event(session, account_id=account)


def test_each_run_forgets_a_bounded_number_in_batches(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = new_account(ctx)
    old = ctx.clock.now() - dt.timedelta(days=100)
    with ctx.db.uow() as uow:
        for _ in range(10):
            email(uow.session, account, OutboxStatus.SENT, old)
        uow.commit()
    monkeypatch.setattr(registry, "RETENTION_BATCH", 3)
    monkeypatch.setattr(registry, "RETENTION_BATCHES", 2)
    assert run(ctx)["emails"] == 6  # two batches of three, then the run moves on
    assert run(ctx)["emails"] == 4  # the next run takes the rest
    assert run(ctx)["emails"] == 0


def test_a_row_changed_between_choosing_and_deleting_stays(ctx: Context) -> None:
    """The operator sends a dead email again while the job is forgetting it: it stays."""
    account = new_account(ctx)
    old = ctx.clock.now() - dt.timedelta(days=100)
    with ctx.db.uow() as uow:
        requeued = email(uow.session, account, OutboxStatus.DEAD, old).id
        forgotten = email(uow.session, account, OutboxStatus.DEAD, old).id
        uow.commit()

    def requeue_first(state: ORMExecuteState) -> None:
        if state.is_delete:
            state.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == requeued)
                .values(status=OutboxStatus.PENDING)
            )

    event.listen(Session, "do_orm_execute", requeue_first)
    try:
        assert run(ctx)["emails"] == 1
    finally:
        event.remove(Session, "do_orm_execute", requeue_first)
    kept = remaining(ctx, OutboxMessage)
    assert requeued in kept and forgotten not in kept


@pytest.mark.parametrize("days", [0, 29, 36_501])
def test_the_retention_setting_is_bounded(days: int) -> None:
    with pytest.raises(ValidationError, match="retention_days"):
        Settings(retention_days=days)
