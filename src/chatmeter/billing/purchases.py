"""Buying packages now: a workflow of an invoice, a charge, and the tokens at once."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.billing import charges, checkout, subscriptions
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.invoices import new_invoice
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.config import Settings
from chatmeter.errors import IdempotencyConflict, PaymentFailed
from chatmeter.idempotency import check_key, request_hash
from chatmeter.ledger import service as ledger


@dataclass(frozen=True, slots=True)
class Bought:
    invoice: Invoice
    # The gateway's page where the customer finishes paying (an account's first card
    # payment); None when the invoice was charged directly.
    pay_url: str | None = None


def purchase(
    ctx: charges.Payments, *, account_id: int, packages: int, key: str | None = None
) -> Invoice:
    """Buy packages now: invoice, charge, and on success the tokens at once.

    With the same ``key`` a retry returns the first invoice and charges nothing
    more. A declined card raises ``PaymentFailed`` and grants nothing.
    """
    return start_purchase(ctx, account_id=account_id, packages=packages, key=key).invoice


def start_purchase(
    ctx: charges.Payments, *, account_id: int, packages: int, key: str | None = None
) -> Bought:
    """``purchase``, or with a gateway that takes an account's first payment on its own
    page (Stripe Checkout), the pending invoice and that page's address."""
    packages = subscriptions.check_packages(packages)
    key = check_key(key) if key is not None else f"purchase:{uuid.uuid4()}"
    with ctx.db.uow() as uow:
        invoice = _open_purchase(
            uow.session,
            ctx.settings,
            account_id=account_id,
            packages=packages,
            key=key,
            now=ctx.clock.now(),
        )
        uow.commit()
    if invoice.status == InvoiceStatus.PENDING and invoice.checkout_reference is not None:
        return _on_page(ctx, account_id, invoice)
    if invoice.status == InvoiceStatus.OPEN and checkout.needs_page(ctx, account_id=account_id):
        return _on_page(ctx, account_id, invoice)
    invoice = charges.charge(ctx, invoice.id)
    if invoice.status == InvoiceStatus.FAILED:
        raise PaymentFailed(
            f"the payment was declined: {invoice.failure_reason}", invoice_id=invoice.id
        )
    return Bought(invoice)


def _on_page(ctx: charges.Payments, account_id: int, invoice: Invoice) -> Bought:
    started = checkout.pay_on_page(ctx, account_id=account_id, invoice_id=invoice.id)
    return Bought(started.invoice, started.url)


def _open_purchase(
    session: Session,
    settings: Settings,
    *,
    account_id: int,
    packages: int,
    key: str,
    now: dt.datetime,
) -> Invoice:
    balance = ledger.lock_balance(session, account_id=account_id)
    account = get_account(session, account_id)
    fingerprint = request_hash({"packages": packages})
    existing = session.scalar(
        select(Invoice).where(Invoice.account_id == account_id, Invoice.key == key)
    )
    if existing is not None:
        if existing.kind != InvoiceKind.PURCHASE or existing.request_hash != fingerprint:
            raise IdempotencyConflict(
                "this idempotency key was already used for a different purchase", key=key
            )
        return existing
    invoice = new_invoice(
        session,
        settings,
        account_id=account_id,
        key=key,
        kind=InvoiceKind.PURCHASE,
        period=subscriptions.current_period(balance, account.timezone, now),
        packages=packages,
        free_tokens=0,
        now=now,
        request_hash=fingerprint,
    )
    return invoice
