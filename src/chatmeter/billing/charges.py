"""Charging an invoice, and what its outcome does: fulfil it, or decline it.

``charge`` is a workflow of two transactions with the payment gateway called
between them, never while the account's lock is held: the attempt is claimed
in the first (so two workers never charge one invoice at once) and the
gateway's answer applied in the second. A gateway that answers ``pending``
confirms later through ``confirm_payment`` or ``reject_payment``.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import cards, events, periods, receipts, subscriptions, topups
from chatmeter.billing.gateways import ChargeRequest, ChargeResult, ChargeStatus, PaymentGateway
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.invoices import locked_invoice
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus, SubscriptionStatus
from chatmeter.config import Settings
from chatmeter.errors import Conflict, NotFound
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import GrantSource
from chatmeter.notifications import balance_notices
from chatmeter.services import Basics

# How long one charge attempt may take before another worker may try again.
CHARGE_LEASE = dt.timedelta(minutes=10)


class Payments(Basics, Protocol):
    """What billing's workflows need of the application (``chatmeter.context.Context``)."""

    @property
    def gateway(self) -> PaymentGateway: ...


def charge(ctx: Payments, invoice_id: int) -> Invoice:
    """One charge attempt: claimed in one transaction, applied in the next."""
    with ctx.db.uow() as uow:
        invoice, request = _claim_attempt(uow.session, ctx, invoice_id)
        uow.commit()
    if request is None:
        return invoice
    result = ctx.gateway.charge(request)
    with ctx.db.uow() as uow:
        invoice = _apply(uow.session, ctx.settings, invoice_id, result, now=ctx.clock.now())
        uow.commit()
    return invoice


def _claim_attempt(
    session: Session, ctx: Payments, invoice_id: int
) -> tuple[Invoice, ChargeRequest | None]:
    now = ctx.clock.now()
    invoice = locked_invoice(session, invoice_id)
    due = invoice.next_attempt_at is None or invoice.next_attempt_at <= now
    if invoice.status != InvoiceStatus.OPEN or not due:
        return invoice, None
    # An attempt that never got its answer (the process died, the network dropped) is
    # repeated under the same idempotency key, so the gateway answers it without
    # charging again; only an attempt the gateway answered counts toward the retries.
    if invoice.attempts == 0 or invoice.failure_reason is not None:
        invoice.attempts += 1
    invoice.failure_reason = None
    invoice.gateway = ctx.gateway.name
    invoice.next_attempt_at = now + CHARGE_LEASE
    card = cards.saved_card(session, account_id=invoice.account_id, gateway=ctx.gateway.name)
    request = ChargeRequest(
        invoice_id=invoice.id,
        account_id=invoice.account_id,
        amount_cents=invoice.amount_cents,
        currency=invoice.currency,
        description=f"Chatmeter {invoice.kind} {invoice.period}: {invoice.packages} packages",
        idempotency_key=f"invoice:{invoice.id}:attempt:{invoice.attempts}",
        customer=card.customer_reference if card else None,
        card=card.card_reference if card else None,
    )
    return invoice, request


def _apply(
    session: Session,
    settings: Settings,
    invoice_id: int,
    result: ChargeResult,
    *,
    now: dt.datetime,
) -> Invoice:
    invoice = locked_invoice(session, invoice_id)
    if invoice.status != InvoiceStatus.OPEN:
        return invoice
    if result.status == ChargeStatus.SUCCEEDED:
        fulfil(session, invoice, reference=result.reference, now=now)
    elif result.status in (ChargeStatus.PENDING, ChargeStatus.ACTION_REQUIRED):
        invoice.status = InvoiceStatus.PENDING
        invoice.gateway_reference = result.reference
        invoice.next_attempt_at = None
        if result.status == ChargeStatus.ACTION_REQUIRED:
            # The bank asks the cardholder (3-D Secure): a link to pay on the gateway's page.
            invoice.failure_reason = (result.reason or "your bank asks you to confirm")[:500]
            receipts.payment_action_required(
                session,
                settings,
                account=get_account(session, invoice.account_id),
                invoice=invoice,
                now=now,
            )
    else:
        _decline(session, settings, invoice, reason=result.reason or "declined", now=now)
    return invoice


def confirm_payment(
    session: Session,
    *,
    account_id: int,
    invoice_id: int,
    now: dt.datetime,
    reference: str | None = None,
) -> Invoice:
    """The gateway (or the operator) confirms an invoice was paid: fulfil it, once."""
    invoice = locked_invoice(session, invoice_id)
    if invoice.account_id != account_id:
        raise NotFound("no such invoice", invoice_id=invoice_id)
    if invoice.status == InvoiceStatus.PAID:
        return invoice
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PENDING):
        raise Conflict(f"invoice {invoice.number} is {invoice.status} and cannot be paid")
    fulfil(session, invoice, reference=reference, now=now)
    return invoice


def reject_payment(
    session: Session,
    *,
    settings: Settings,
    account_id: int,
    invoice_id: int,
    reason: str,
    now: dt.datetime,
) -> Invoice:
    """The gateway reports that a pending payment failed."""
    invoice = locked_invoice(session, invoice_id)
    if invoice.account_id != account_id:
        raise NotFound("no such invoice", invoice_id=invoice_id)
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PENDING):
        raise Conflict(f"invoice {invoice.number} is {invoice.status}")
    invoice.status = InvoiceStatus.OPEN
    _decline(session, settings, invoice, reason=reason, now=now)
    return invoice


def fulfil(session: Session, invoice: Invoice, *, reference: str | None, now: dt.datetime) -> None:
    """The invoice is paid: grant what it bought and send its receipt."""
    account = get_account(session, invoice.account_id)
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = now
    invoice.gateway_reference = reference
    invoice.next_attempt_at = None
    invoice.failure_reason = None
    if invoice.kind == InvoiceKind.PURCHASE:
        _fulfil_purchase(session, account, invoice, now)
    elif invoice.kind == InvoiceKind.TOPUP:  # auto top-up's hook: billing/topups.py
        topups.fulfil_topup(session, account=account, invoice=invoice, now=now)
    else:
        _fulfil_renewal(session, account, invoice, now)
    events.purchase_paid(session, invoice=invoice, now=now)


def _fulfil_purchase(
    session: Session, account: Account, invoice: Invoice, now: dt.datetime
) -> None:
    subscription = subscriptions.get_subscription(session, account_id=account.id)
    period = subscriptions.current_period(
        ledger.lock_balance(session, account_id=account.id), account.timezone, now
    )
    if subscription.status == SubscriptionStatus.CANCELLED:
        # Buying again after cancelling starts a new subscription of these packages.
        subscription.status = SubscriptionStatus.ACTIVE
        subscription.cancelled_at = None
        subscription.quantity = invoice.packages
        subscription.next_quantity = None
    else:
        subscription.quantity += invoice.packages
        if subscription.next_quantity is not None:
            subscription.next_quantity += invoice.packages
    grant_packages(session, account, invoice, period, now, memo="purchase")
    balance_notices.send_raised(session, now=now)
    receipts.purchase_receipt(
        session,
        account=account,
        invoice=invoice,
        subscription=subscription,
        balance=ledger.lock_balance(session, account_id=account.id),
        now=now,
    )


def grant_packages(
    session: Session,
    account: Account,
    invoice: Invoice,
    period: str,
    now: dt.datetime,
    *,
    memo: str,
) -> None:
    """The packages an invoice bought, granted at once for this month (a purchase's or an
    auto top-up's: they expire on the 1st like the month's renewal, or later by the
    invoice's rollover)."""
    last = periods.later(period, invoice.rollover_months)
    ledger.grant(
        session,
        account_id=account.id,
        amount=invoice.packages * invoice.package_tokens,
        source=GrantSource.PURCHASE,
        key=f"invoice:{invoice.id}",
        period=period,
        last_period=last if last != period else None,
        now=now,
        expires_at=periods.ends_at(last, account.timezone),
        invoice_id=invoice.id,
        memo=f"{memo} of {invoice.packages} packages",
    )


def _fulfil_renewal(session: Session, account: Account, invoice: Invoice, now: dt.datetime) -> None:
    subscription = subscriptions.get_subscription(session, account_id=account.id)
    period = invoice.period
    subscriptions.begin_month(
        session,
        account,
        period,
        now,
        free_tokens=invoice.free_tokens,
        packages=invoice.packages,
        package_tokens=invoice.package_tokens,
        invoice_id=invoice.id,
        rollover_months=invoice.rollover_months,
    )
    subscription.renewed_period = max(period, subscription.renewed_period or period)
    if invoice.amount_cents == 0:
        return
    receipts.renewal_receipt(
        session,
        account=account,
        invoice=invoice,
        balance=ledger.lock_balance(session, account_id=account.id),
        now=now,
    )


def _decline(
    session: Session, settings: Settings, invoice: Invoice, *, reason: str, now: dt.datetime
) -> None:
    account = get_account(session, invoice.account_id)
    invoice.failure_reason = reason[:500]
    if invoice.kind in (InvoiceKind.PURCHASE, InvoiceKind.TOPUP):
        invoice.status = InvoiceStatus.FAILED
        invoice.next_attempt_at = None
        if invoice.kind == InvoiceKind.TOPUP:  # auto top-up's hook: billing/topups.py
            topups.on_declined(session, account=account, invoice=invoice, now=now)
        return
    final = invoice.attempts >= settings.renewal_max_attempts
    if final:
        # Out of retries: the subscription ends and last month's tokens with it.
        invoice.status = InvoiceStatus.FAILED
        invoice.next_attempt_at = None
        subscription = subscriptions.get_subscription(session, account_id=account.id)
        subscription.status = SubscriptionStatus.CANCELLED
        subscription.cancelled_at = now
        subscription.renewed_period = invoice.period
        subscription.quantity = 0
        subscriptions.begin_month(
            session, account, invoice.period, now, free_tokens=invoice.free_tokens
        )
    else:
        invoice.status = InvoiceStatus.OPEN
        invoice.next_attempt_at = now + dt.timedelta(hours=settings.renewal_retry_hours)
    receipts.renewal_failed(
        session,
        account=account,
        invoice=invoice,
        final=final,
        balance=ledger.lock_balance(session, account_id=account.id),
        now=now,
    )
    events.renewal_failed(session, invoice=invoice, final=final, now=now)
