"""Billing's events for the customer's webhooks (``chatmeter.webhooks``).

Written in the transaction that paid or declined the invoice, with the figures of the
invoice as the API's ``GET /invoices`` shows them, so a receiver can match them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from chatmeter.billing.invoices import format_cents
from chatmeter.billing.models import Invoice, InvoiceKind
from chatmeter.billing.summary import invoice_dict
from chatmeter.ledger import service as ledger
from chatmeter.webhooks import events
from chatmeter.webhooks.events import EventType

# What a receiver needs of an invoice (its refund fields: ``invoice.refunded``'s).
INVOICE_FIELDS = (
    "id",
    "number",
    "kind",
    "status",
    "period",
    "packages",
    "tokens",
    "unit_price",
    "net",
    "tax_rate",
    "tax",
    "amount",
    "currency",
    "created_at",
    "paid_at",
)


def invoice_data(invoice: Invoice) -> dict[str, Any]:
    shown = invoice_dict(invoice)
    return {name: shown[name] for name in INVOICE_FIELDS}


def purchase_paid(session: Session, *, invoice: Invoice, now: dt.datetime) -> None:
    """``purchase.paid``: a purchase or an auto top-up was paid and its tokens granted."""
    if invoice.kind not in (InvoiceKind.PURCHASE, InvoiceKind.TOPUP):
        return
    balance = ledger.lock_balance(session, account_id=invoice.account_id)
    events.emit(
        session,
        account_id=invoice.account_id,
        type=EventType.PURCHASE_PAID,
        key=str(invoice.id),
        data={
            "invoice": invoice_data(invoice),
            "auto_top_up": invoice.kind == InvoiceKind.TOPUP,
            "balance": balance.balance,
        },
        now=now,
    )


def invoice_refunded(
    session: Session,
    *,
    invoice: Invoice,
    refunded_cents: int,
    tokens_share: int | None,
    tokens_removed: int,
    balance: int,
    now: dt.datetime,
) -> None:
    """``invoice.refunded``: money came back on a paid invoice, ``refunded_cents`` of it now
    (the invoice carries the total). The same figures as the refund's email: in full, or
    the share of the invoice's tokens it takes back and how many of them were unspent.
    The caller holds the account's balance lock (``emit``)."""
    events.emit(
        session,
        account_id=invoice.account_id,
        type=EventType.INVOICE_REFUNDED,
        key=f"{invoice.id}:{invoice.refunded_cents}",  # one event per refund, as the email
        data={
            "invoice": invoice_data(invoice)
            | {
                "refunded": format_cents(invoice.refunded_cents),
                "refunded_at": invoice.refunded_at,
            },
            "amount": format_cents(refunded_cents),
            "in_full": tokens_share is None,
            "tokens_share": tokens_share or 0,
            "tokens_removed": tokens_removed,
            "balance": balance,
        },
        now=now,
    )


def renewal_failed(session: Session, *, invoice: Invoice, final: bool, now: dt.datetime) -> None:
    """``renewal.failed``: one per failed attempt; ``final`` when the subscription ended."""
    events.emit(
        session,
        account_id=invoice.account_id,
        type=EventType.RENEWAL_FAILED,
        key=f"{invoice.id}:{invoice.attempts}",
        data={
            "invoice": invoice_data(invoice),
            "attempt": invoice.attempts,
            "reason": invoice.failure_reason,
            "final": final,
            "next_attempt_at": invoice.next_attempt_at,
        },
        now=now,
    )
