"""The monthly renewal: a workflow per account, and the scheduled job that runs them all.

Only the current month is renewed, however long the system was down: a missed
month is never replayed. The packages renewing are fixed when the renewal
starts; the charge runs as ``charges.charge`` does, outside the account's lock.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import charges, periods, subscriptions
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.invoices import new_invoice
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus, Subscription
from chatmeter.config import Settings
from chatmeter.ledger import service as ledger

log = logging.getLogger("chatmeter.billing")


def due_accounts(session: Session, *, now: dt.datetime) -> list[int]:
    """Accounts whose current month (in their own zone) has not been renewed yet."""
    rows = session.execute(
        select(Subscription.account_id, Subscription.renewed_period, Account.timezone)
        .join(Account, Account.id == Subscription.account_id)
        .order_by(Subscription.account_id)
    )
    return [
        account_id
        for account_id, renewed, zone in rows
        if renewed is None or periods.period_of(now, zone) > renewed
    ]


def retryable_invoices(session: Session, *, now: dt.datetime) -> list[int]:
    return list(
        session.scalars(
            select(Invoice.id)
            .where(
                Invoice.status == InvoiceStatus.OPEN,
                Invoice.next_attempt_at <= now,
            )
            .order_by(Invoice.id)
        )
    )


def renew(ctx: charges.Payments, *, account_id: int) -> Invoice | None:
    """Renew one account for its current month, if that is not done yet.

    Returns the renewal invoice (None when nothing was charged).
    """
    with ctx.db.uow() as uow:
        invoice = _start_renewal(
            uow.session, ctx.settings, account_id=account_id, now=ctx.clock.now()
        )
        uow.commit()
    if invoice is None or invoice.status != InvoiceStatus.OPEN:
        return invoice
    return charges.charge(ctx, invoice.id)


def run_renewals(ctx: charges.Payments) -> dict[str, int]:
    """The scheduled job: renew every due account and retry failed renewal charges."""
    now = ctx.clock.now()
    with ctx.db.read() as session:
        due = due_accounts(session, now=now)
        retries = retryable_invoices(session, now=now)
    renewed = failed = 0
    for account_id in due:
        try:
            renew(ctx, account_id=account_id)
            renewed += 1
        except Exception:  # one account's trouble (a gateway error) must not stop the others
            log.exception("renewal of account %s failed; it is retried on the next run", account_id)
            failed += 1
    for invoice_id in retries:
        try:
            charges.charge(ctx, invoice_id)
        except Exception:
            log.exception("charging invoice %s failed; it is retried on the next run", invoice_id)
            failed += 1
    return {"accounts": renewed, "retries": len(retries), "errors": failed}


def _start_renewal(
    session: Session, settings: Settings, *, account_id: int, now: dt.datetime
) -> Invoice | None:
    ledger.lock_balance(session, account_id=account_id)
    account = get_account(session, account_id)
    subscription = subscriptions.get_subscription(session, account_id=account_id)
    period = periods.period_of(now, account.timezone)
    if subscription.renewed_period is not None and subscription.renewed_period >= period:
        return session.scalar(  # already renewed, or its charge is under way
            select(Invoice).where(
                Invoice.account_id == account_id, Invoice.key == f"renewal:{period}"
            )
        )
    existing = session.scalar(
        select(Invoice).where(Invoice.account_id == account_id, Invoice.key == f"renewal:{period}")
    )
    if existing is not None:
        return existing
    # A past month's renewal still being retried is overtaken by this one.
    for stale in session.scalars(
        select(Invoice).where(
            Invoice.account_id == account_id,
            Invoice.kind == InvoiceKind.RENEWAL,
            Invoice.status.in_([InvoiceStatus.OPEN, InvoiceStatus.PENDING]),
        )
    ):
        stale.status = InvoiceStatus.VOID
        stale.next_attempt_at = None
    # The quantity renewing now is fixed here: a purchase or change made while
    # this month's charge is retried belongs to the next renewal.
    packages = subscription.renewing_quantity
    subscription.quantity = packages
    subscription.next_quantity = None
    free_tokens = subscriptions.free_allowance(settings, account)
    if packages == 0:  # cancelled or never bought: nothing to charge
        subscriptions.begin_month(session, account, period, now, free_tokens=free_tokens)
        subscription.renewed_period = period
        return None
    invoice = new_invoice(
        session,
        settings,
        account_id=account_id,
        key=f"renewal:{period}",
        kind=InvoiceKind.RENEWAL,
        period=period,
        packages=packages,
        free_tokens=free_tokens,
        now=now,
    )
    if invoice.amount_cents == 0:  # the operator gives packages away
        charges.fulfil(session, invoice, reference=None, now=now)
    return invoice
