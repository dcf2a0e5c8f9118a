"""Stripe's webhooks: each event applied at most once, in any order, on Stripe's own word.

``receive`` checks the signature (refused: nothing changes), ignores the events
Chatmeter does not act on, then asks Stripe again for the object the event names:
the payload's amounts and statuses are never believed as such, and an event arriving
late or out of order is read against the object as it is now. The event's id is
written in the same transaction that applies it, so five deliveries of one event at
once apply it once: the others find it taken and are acknowledged.

What an event may do is narrow: confirm an open or pending invoice whose amount and
currency Stripe says it received, decline an off-session charge Stripe says failed,
keep the card a customer saved, and follow a refund made in Stripe's dashboard
(``charge.refunded``) for a paid invoice whose very payment Stripe says it refunded:
the invoice's refunded total is brought to Stripe's, by ``billing.refunds``, so the
webhook of a refund already written (the CLI's own) changes nothing. Anything that
does not match is logged and acknowledged (Stripe would otherwise redeliver it for
days).
"""

from __future__ import annotations

import datetime as dt
import logging
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatmeter.billing import cards, charges, refunds
from chatmeter.billing.invoices import locked_invoice
from chatmeter.billing.models import GatewayEvent, Invoice, InvoiceStatus
from chatmeter.billing.stripe_gateway import (
    HANDLED_EVENTS,
    CardSetup,
    ChargeRefunds,
    Event,
    InvalidEvent,
    Payment,
    StripeGateway,
)
from chatmeter.config import Settings
from chatmeter.db import delete_batch
from chatmeter.errors import NotFound
from chatmeter.ledger import service as ledger
from chatmeter.notifications import balance_notices

log = logging.getLogger("chatmeter.billing.webhooks")

__all__ = ["InvalidEvent", "Outcome", "prune_seen", "receive"]


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


def receive(ctx: charges.Payments, payload: bytes, signature: str | None) -> Outcome:
    """Apply one delivery; ``InvalidEvent`` when its signature is missing, stale or wrong."""
    gateway = ctx.gateway
    if not isinstance(gateway, StripeGateway):
        raise NotFound("this installation takes no Stripe payments")
    event = gateway.read_event(payload, signature)
    if event.type not in HANDLED_EVENTS or not event.object_id:
        return Outcome.IGNORED
    with ctx.db.read() as session:
        if _seen(session, gateway.name, event.id):
            return Outcome.DUPLICATE
    facts = _ask_stripe(gateway, event)  # outside any transaction: no lock waits on Stripe
    try:
        with ctx.db.uow() as uow:
            session = uow.session
            session.add(
                GatewayEvent(
                    gateway=gateway.name,
                    event_id=event.id,
                    type=event.type,
                    received_at=ctx.clock.now(),
                )
            )
            session.flush()  # a concurrent delivery of this event waits here, then fails
            _apply(session, ctx.settings, gateway.name, event, facts, ctx.clock.now())
            balance_notices.send_raised(session, now=ctx.clock.now())
            uow.commit()
    except IntegrityError:
        return Outcome.DUPLICATE
    return Outcome.APPLIED


def prune_seen(session: Session, *, before: dt.datetime, limit: int) -> int:
    """Forget at most ``limit`` of the gateway's event ids received before ``before``.

    They only stop a repeated delivery from applying twice, and Stripe repeats an
    event for three days at most (and resends one by hand for 30).
    """
    return delete_batch(session, GatewayEvent, GatewayEvent.received_at < before, limit=limit)


def _seen(session: Session, gateway: str, event_id: str) -> bool:
    found = session.scalar(
        select(GatewayEvent.event_id).where(
            GatewayEvent.gateway == gateway, GatewayEvent.event_id == event_id
        )
    )
    return found is not None


Facts = Payment | CardSetup | ChargeRefunds | None


def _ask_stripe(gateway: StripeGateway, event: Event) -> Facts:
    if event.type == "charge.refunded":
        return gateway.charge_refunds(event.object_id)
    if event.type == "checkout.session.completed":
        return gateway.checkout_payment(event.object_id)
    if event.type == "setup_intent.succeeded":
        return gateway.setup(event.object_id)
    return gateway.payment(event.object_id)


def _apply(
    session: Session,
    settings: Settings,
    gateway: str,
    event: Event,
    facts: Facts,
    now: dt.datetime,
) -> None:
    if isinstance(facts, CardSetup):
        _keep_card(session, gateway, facts, now)
    elif isinstance(facts, ChargeRefunds):
        _refunded(session, gateway, event, facts, now)
    elif isinstance(facts, Payment):
        _payment(session, settings, gateway, event, facts, now)


def _keep_card(session: Session, gateway: str, setup: CardSetup, now: dt.datetime) -> None:
    if setup.account_id is None or setup.card is None or setup.customer is None:
        return
    ledger.lock_balance(session, account_id=setup.account_id)
    known = cards.customer_reference(session, account_id=setup.account_id, gateway=gateway)
    if known != setup.customer:
        log.warning(
            "a saved card for account %s names customer %s, not the account's %s: ignored",
            setup.account_id,
            setup.customer,
            known,
        )
        return
    cards.save_card(
        session,
        account_id=setup.account_id,
        gateway=gateway,
        customer=setup.customer,
        card=setup.card,
        now=now,
    )


def _payment(
    session: Session,
    settings: Settings,
    gateway: str,
    event: Event,
    payment: Payment,
    now: dt.datetime,
) -> None:
    if payment.invoice_id is None:
        return  # not one of Chatmeter's payments
    found = session.get(Invoice, payment.invoice_id)
    if found is None:
        log.warning("event %s: payment %s names no invoice here", event.id, payment.reference)
        return
    invoice = locked_invoice(session, found.id)
    if payment.account_id is not None and payment.account_id != invoice.account_id:
        log.warning("event %s: payment %s names another account", event.id, payment.reference)
        return
    known = cards.customer_reference(session, account_id=invoice.account_id, gateway=gateway)
    if payment.customer is not None and known is not None and payment.customer != known:
        log.warning("event %s: payment %s names another customer", event.id, payment.reference)
        return
    if payment.status == "succeeded":
        _paid(session, gateway, event, invoice, payment, now)
    elif payment.status in ("requires_payment_method", "canceled"):
        _failed(session, settings, invoice, payment, now)


def _paid(
    session: Session,
    gateway: str,
    event: Event,
    invoice: Invoice,
    payment: Payment,
    now: dt.datetime,
) -> None:
    if payment.card is not None and payment.customer is not None:
        cards.save_card(
            session,
            account_id=invoice.account_id,
            gateway=gateway,
            customer=payment.customer,
            card=payment.card,
            now=now,
        )
    if invoice.status == InvoiceStatus.PAID:
        return
    if (payment.amount_received, payment.currency) != (invoice.amount_cents, invoice.currency):
        log.error(
            "event %s: Stripe received %s %s for invoice %s of %s %s: not granted; "
            "an operator must look at it",
            event.id,
            payment.amount_received,
            payment.currency,
            invoice.number,
            invoice.amount_cents,
            invoice.currency,
        )
        return
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PENDING):
        log.error(
            "event %s: invoice %s is %s but Stripe was paid for it (%s): refund it",
            event.id,
            invoice.number,
            invoice.status,
            payment.reference,
        )
        return
    charges.confirm_payment(
        session,
        account_id=invoice.account_id,
        invoice_id=invoice.id,
        now=now,
        reference=payment.reference,
    )


def _failed(
    session: Session, settings: Settings, invoice: Invoice, payment: Payment, now: dt.datetime
) -> None:
    """Stripe says an off-session charge failed after all: today's decline path."""
    waiting_for_it = (
        invoice.status == InvoiceStatus.PENDING
        and invoice.gateway_reference == payment.reference
        and invoice.checkout_reference is None
    )
    if not waiting_for_it or payment.via_checkout or payment.needs_customer:
        # A failed try on the hosted page (the customer may try another card there), or a
        # charge waiting for 3-D Secure, which the emailed link completes.
        return
    charges.reject_payment(
        session,
        settings=settings,
        account_id=invoice.account_id,
        invoice_id=invoice.id,
        reason="the card was declined",
        now=now,
    )


def _refunded(
    session: Session, gateway: str, event: Event, charge: ChargeRefunds, now: dt.datetime
) -> None:
    """Stripe refunded some or all of a charge: the invoice it paid follows, if it is ours."""
    if charge.invoice_id is None or session.get(Invoice, charge.invoice_id) is None:
        log.warning("event %s: charge %s paid no invoice here", event.id, charge.charge)
        return
    invoice = locked_invoice(session, charge.invoice_id)
    if not _paid_by(session, gateway, invoice, charge):
        log.warning(
            "event %s: charge %s is not the payment of invoice %s by its account's customer",
            event.id,
            charge.charge,
            invoice.number,
        )
        return
    if invoice.status != InvoiceStatus.PAID:
        log.warning(
            "event %s: invoice %s is %s: no refund to follow",
            event.id,
            invoice.number,
            invoice.status,
        )
        return
    if (charge.amount_captured, charge.currency) != (invoice.amount_cents, invoice.currency):
        log.error(
            "event %s: charge %s took %s %s for invoice %s of %s %s: its refund is not "
            "applied; an operator must look at it",
            event.id,
            charge.charge,
            charge.amount_captured,
            charge.currency,
            invoice.number,
            invoice.amount_cents,
            invoice.currency,
        )
        return
    if charge.amount_refunded < invoice.refunded_cents:
        log.warning(
            "event %s: Stripe says %s of invoice %s is refunded, Chatmeter wrote %s: kept",
            event.id,
            charge.amount_refunded,
            invoice.number,
            invoice.refunded_cents,
        )
        return
    refunds.record_refund(session, invoice=invoice, refunded_cents=charge.amount_refunded, now=now)


def _paid_by(session: Session, gateway: str, invoice: Invoice, charge: ChargeRefunds) -> bool:
    """Whether the charge is the invoice's own payment, by its account's Stripe customer
    (metadata anyone can write on a PaymentIntent is not enough)."""
    known = cards.customer_reference(session, account_id=invoice.account_id, gateway=gateway)
    return (
        invoice.gateway == gateway
        and charge.payment_intent is not None
        and invoice.gateway_reference == charge.payment_intent
        and known is not None
        and charge.customer == known
    )
