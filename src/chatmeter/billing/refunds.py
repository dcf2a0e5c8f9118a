"""Refunding a paid invoice: the money back through its gateway, its unspent tokens removed.

A workflow of three steps, the gateway called between two transactions like a
charge: the invoice is checked, the gateway refunds under a key derived from the
invoice (a retry, or two operators at once, refund once), and the refund is written:
the tokens of the invoice's grants that are still unspent are removed by a ledger
entry (never below zero, never twice), a refunded purchase's packages leave the
subscription (they are not renewed on the 1st), and the customer is emailed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.billing import charges, receipts, subscriptions
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.invoices import locked_invoice
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.errors import Conflict, NotFound, PaymentFailed
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Grant, GrantSource
from chatmeter.notifications import balance_notices


@dataclass(frozen=True, slots=True)
class Refunded:
    invoice: Invoice
    amount_cents: int
    tokens_removed: int


def refund(ctx: charges.Payments, *, invoice_id: int, account_id: int | None = None) -> Refunded:
    """Refund the whole of a paid invoice; ``Conflict`` if it is not paid or already refunded."""
    with ctx.db.read() as session:
        invoice = _refundable(session, invoice_id, account_id)
        reference, amount = invoice.gateway_reference, invoice.amount_cents
    if amount > 0:
        result = ctx.gateway.refund(
            reference=reference, amount_cents=amount, idempotency_key=f"invoice:{invoice_id}:refund"
        )
        if not result.succeeded:
            raise PaymentFailed(
                f"the refund was refused: {result.reason or 'no reason given'}",
                invoice_id=invoice_id,
            )
    with ctx.db.uow() as uow:
        now = ctx.clock.now()
        invoice = locked_invoice(uow.session, invoice_id)
        if invoice.refunded_at is not None:  # another refund of it got here first
            raise Conflict(f"invoice {invoice.number} was already refunded")
        invoice.refunded_cents = amount
        invoice.refunded_at = now
        removed = _remove_tokens(uow.session, invoice, now)
        if invoice.kind == InvoiceKind.PURCHASE:
            _leave_subscription(uow.session, invoice)
        receipts.refund_issued(
            uow.session,
            account=get_account(uow.session, invoice.account_id),
            invoice=invoice,
            tokens_removed=removed,
            balance=ledger.lock_balance(uow.session, account_id=invoice.account_id),
            now=now,
        )
        balance_notices.send_raised(uow.session, now=now, settings=ctx.settings)
        uow.commit()
    return Refunded(invoice, amount, removed)


def _refundable(session: Session, invoice_id: int, account_id: int | None) -> Invoice:
    invoice = session.get(Invoice, invoice_id)
    if invoice is None or (account_id is not None and invoice.account_id != account_id):
        raise NotFound("no such invoice", invoice_id=invoice_id)
    if invoice.status != InvoiceStatus.PAID:
        raise Conflict(f"invoice {invoice.number} is {invoice.status}: only a paid one is refunded")
    if invoice.refunded_at is not None:
        raise Conflict(f"invoice {invoice.number} was already refunded")
    return invoice


def _remove_tokens(session: Session, invoice: Invoice, now: dt.datetime) -> int:
    grants = session.scalars(
        select(Grant)
        .where(
            Grant.account_id == invoice.account_id,
            Grant.invoice_id == invoice.id,
            Grant.source != GrantSource.FREE,  # the operator's gift stays
        )
        .order_by(Grant.id)
    ).all()
    return sum(
        ledger.revoke(
            session,
            account_id=invoice.account_id,
            grant_id=grant.id,
            now=now,
            memo=f"refund of invoice {invoice.number}",
        )
        for grant in grants
    )


def _leave_subscription(session: Session, invoice: Invoice) -> None:
    subscription = subscriptions.get_subscription(session, account_id=invoice.account_id)
    subscription.quantity = max(0, subscription.quantity - invoice.packages)
    if subscription.next_quantity is not None:
        subscription.next_quantity = max(0, subscription.next_quantity - invoice.packages)
