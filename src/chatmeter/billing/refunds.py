"""Refunding a paid invoice: the money back through its gateway, its unspent tokens removed.

Two ways in, one way to write it (``record_refund``):

- ``refund`` (``chatmeter invoices refund``): a workflow of three steps, the gateway
  called between two transactions like a charge: the invoice is checked, the gateway
  refunds what is left of it under a key derived from the invoice and what was
  refunded before (a retry, or two operators at once, refund once), and the refund is
  written;
- Stripe's ``charge.refunded`` webhook (``billing.webhooks``), for a refund an
  operator made in Stripe's dashboard: the gateway has already paid it back, so only
  the writing is left.

Writing a refund takes the invoice's refunded total to what the gateway says it now
is, so the second report of one refund (the webhook after the CLI, five deliveries of
one event) finds nothing new and changes nothing. What it changes:

- in full: the tokens of the invoice's grants that are still unspent are removed by a
  ledger entry (never below zero, never twice), and a refunded purchase's packages
  leave the subscription (they are not renewed on the 1st);
- in part: the same share of the invoice's paid tokens, rounded down, is removed
  from its grants' unspent tokens (never below zero), and the packages stay
  subscribed. The share is of the total refunded so far, less what earlier refunds
  took (``refund_share``), so rounding loses nothing over several refunds; the
  refund of the rest completes it as above;
- either way the customer is emailed what came back and what left the balance, and
  the account's webhooks get ``invoice.refunded`` with the same figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.billing import charges, events, receipts, subscriptions
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
    amount_cents: int  # what this refund paid back (the invoice keeps the total)
    tokens_removed: int


def refund(ctx: charges.Payments, *, invoice_id: int, account_id: int | None = None) -> Refunded:
    """Refund what is left of a paid invoice; ``Conflict`` if it is not paid or already
    refunded in full."""
    with ctx.db.read() as session:
        invoice = _refundable(session, invoice_id, account_id)
        reference, amount = invoice.gateway_reference, invoice.amount_cents
        before = invoice.refunded_cents
    if amount > before:
        result = ctx.gateway.refund(
            reference=reference,
            amount_cents=amount - before,
            idempotency_key=_refund_key(invoice_id, before),
        )
        if not result.succeeded:
            raise PaymentFailed(
                f"the refund was refused: {result.reason or 'no reason given'}",
                invoice_id=invoice_id,
            )
    with ctx.db.uow() as uow:
        now = ctx.clock.now()
        invoice = locked_invoice(uow.session, invoice_id)
        done = record_refund(uow.session, invoice=invoice, refunded_cents=amount, now=now)
        if done is None:  # another refund of it (an operator, Stripe's webhook) got here first
            raise Conflict(f"invoice {invoice.number} was already refunded")
        balance_notices.send_raised(uow.session, now=now, settings=ctx.settings)
        uow.commit()
    return done


def record_refund(
    session: Session, *, invoice: Invoice, refunded_cents: int, now: dt.datetime
) -> Refunded | None:
    """Write that ``refunded_cents`` of the invoice (locked) are now refunded in all; None
    when that much is written already."""
    if fully_refunded(invoice):
        return None
    before = invoice.refunded_cents
    total = min(refunded_cents, invoice.amount_cents)
    in_full = total >= invoice.amount_cents
    if not in_full and total <= before:
        return None
    if in_full:
        removed = _remove_tokens(session, invoice, now, memo=f"refund of invoice {invoice.number}")
        if invoice.kind == InvoiceKind.PURCHASE:
            _leave_subscription(session, invoice)
        share = None
    else:
        share = refund_share(invoice, total) - refund_share(invoice, before)
        memo = f"partial refund of invoice {invoice.number}"
        removed = _remove_tokens(session, invoice, now, memo=memo, at_most=share)
    invoice.refunded_cents = total
    invoice.refunded_at = now
    balance = ledger.lock_balance(session, account_id=invoice.account_id)
    receipts.refund_issued(
        session,
        account=get_account(session, invoice.account_id),
        invoice=invoice,
        refunded_cents=total - before,
        tokens_share=share,
        tokens_removed=removed,
        balance=balance,
        now=now,
    )
    events.invoice_refunded(
        session,
        invoice=invoice,
        refunded_cents=total - before,
        tokens_share=share,
        tokens_removed=removed,
        balance=balance.balance,
        now=now,
    )
    return Refunded(invoice, total - before, removed)


def fully_refunded(invoice: Invoice) -> bool:
    return invoice.refunded_at is not None and invoice.refunded_cents >= invoice.amount_cents


def refund_share(invoice: Invoice, refunded_cents: int) -> int:
    """The invoice's paid tokens in proportion to the money refunded, rounded down (the
    operator's free allowance is never part of it)."""
    if invoice.amount_cents <= 0:
        return 0
    paid_tokens = invoice.packages * invoice.package_tokens
    return paid_tokens * min(refunded_cents, invoice.amount_cents) // invoice.amount_cents


def _refund_key(invoice_id: int, refunded_before: int) -> str:
    """One key per refund of the rest: a retry repeats it, a partial refund since moves it."""
    key = f"invoice:{invoice_id}:refund"
    return key if refunded_before == 0 else f"{key}:after:{refunded_before}"


def _refundable(session: Session, invoice_id: int, account_id: int | None) -> Invoice:
    invoice = session.get(Invoice, invoice_id)
    if invoice is None or (account_id is not None and invoice.account_id != account_id):
        raise NotFound("no such invoice", invoice_id=invoice_id)
    if invoice.status != InvoiceStatus.PAID:
        raise Conflict(f"invoice {invoice.number} is {invoice.status}: only a paid one is refunded")
    if fully_refunded(invoice):
        raise Conflict(f"invoice {invoice.number} was already refunded")
    return invoice


def _remove_tokens(
    session: Session, invoice: Invoice, now: dt.datetime, *, memo: str, at_most: int | None = None
) -> int:
    """Remove the unspent tokens of the invoice's grants, or ``at_most`` that many."""
    grants = session.scalars(
        select(Grant)
        .where(
            Grant.account_id == invoice.account_id,
            Grant.invoice_id == invoice.id,
            Grant.source != GrantSource.FREE,  # the operator's gift stays
        )
        .order_by(Grant.id)
    ).all()
    removed = 0
    for grant in grants:
        left = None if at_most is None else at_most - removed
        if left == 0:
            break
        removed += ledger.revoke(
            session,
            account_id=invoice.account_id,
            grant_id=grant.id,
            now=now,
            memo=memo,
            at_most=left,
        )
    return removed


def _leave_subscription(session: Session, invoice: Invoice) -> None:
    subscription = subscriptions.get_subscription(session, account_id=invoice.account_id)
    subscription.quantity = max(0, subscription.quantity - invoice.packages)
    if subscription.next_quantity is not None:
        subscription.next_quantity = max(0, subscription.next_quantity - invoice.packages)
