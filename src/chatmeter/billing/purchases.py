"""Buying packages now: a workflow of an invoice, a charge, and the tokens at once."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.billing import charges, subscriptions
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.invoices import new_invoice
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.config import Settings
from chatmeter.errors import IdempotencyConflict, PaymentFailed
from chatmeter.idempotency import check_key, request_hash
from chatmeter.ledger import service as ledger


def purchase(
    ctx: charges.Payments, *, account_id: int, packages: int, key: str | None = None
) -> Invoice:
    """Buy packages now: invoice, charge, and on success the tokens at once.

    With the same ``key`` a retry returns the first invoice and charges nothing
    more. A declined card raises ``PaymentFailed`` and grants nothing.
    """
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
    invoice = charges.charge(ctx, invoice.id)
    if invoice.status == InvoiceStatus.FAILED:
        raise PaymentFailed(
            f"the payment was declined: {invoice.failure_reason}", invoice_id=invoice.id
        )
    return invoice


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
    session.add(invoice)
    session.flush()
    return invoice
