"""Packages, the monthly subscription and its invoices.

Functions that take a ``session`` never commit. ``purchase`` and ``renew``
are the exception by necessity: a payment gateway is called between two
transactions, never while the account's lock is held, so they take the
``Context`` and run their own units of work.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods
from chatmeter.billing.gateways import ChargeRequest, ChargeResult, ChargeStatus
from chatmeter.billing.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Subscription,
    SubscriptionStatus,
)
from chatmeter.config import Settings
from chatmeter.context import Context
from chatmeter.errors import Conflict, IdempotencyConflict, InvalidInput, NotFound, PaymentFailed
from chatmeter.idempotency import check_key, request_hash
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance, GrantSource
from chatmeter.notifications.balance_notices import account_figures
from chatmeter.notifications.outbox import enqueue

log = logging.getLogger("chatmeter.billing")

MIN_PACKAGES, MAX_PACKAGES = 1, 1000
# How long one charge attempt may take before another worker may try again.
CHARGE_LEASE = dt.timedelta(minutes=10)


# --- the subscription -------------------------------------------------------


def open_subscription(
    session: Session, *, account_id: int, settings: Settings, now: dt.datetime
) -> Subscription:
    """A new account's subscription: no packages yet, this month counted as renewed.

    The operator's free allowance for the current month is granted at once if the
    account's email is verified; otherwise when it is (``grant_free_allowance``).
    """
    account = _account(session, account_id)
    period = periods.period_of(now, account.timezone)
    subscription = Subscription(
        account_id=account_id,
        quantity=0,
        status=SubscriptionStatus.ACTIVE,
        renewed_period=period,
        created_at=now,
    )
    session.add(subscription)
    ledger.start_period(session, account_id=account_id, period=period)
    grant_free_allowance(session, account_id=account_id, settings=settings, now=now)
    session.flush()
    return subscription


def free_allowance(settings: Settings, account: Account) -> int:
    """The free tokens a month brings this account: none until its email is verified,
    so that signing up again and again does not farm them."""
    return settings.free_tokens if account.email_verified_at is not None else 0


def grant_free_allowance(
    session: Session, *, account_id: int, settings: Settings, now: dt.datetime
) -> None:
    """This month's free tokens, if the account may have them and has not had them yet."""
    balance = ledger.lock_balance(session, account_id=account_id)
    account = _account(session, account_id)
    amount = free_allowance(settings, account)
    if not amount:
        return
    period = current_period(balance, account.timezone, now)
    ledger.grant(
        session,
        account_id=account_id,
        amount=amount,
        source=GrantSource.FREE,
        key=f"free:{period}",
        period=period,
        now=now,
        expires_at=periods.ends_at(period, account.timezone),
        memo="free monthly allowance",
    )


def get_subscription(session: Session, *, account_id: int) -> Subscription:
    subscription = session.get(Subscription, account_id)
    if subscription is None:
        raise NotFound("no such account", account_id=account_id)
    return subscription


PACKAGES_MESSAGE = f"enter a whole number of packages from {MIN_PACKAGES} to {MAX_PACKAGES:,}"


def check_packages(value: object) -> int:
    """A number of packages, or ``InvalidInput``: the one rule the API, the CLI and the
    panel apply. Only a whole number is one (``parse_packages`` reads a person's text)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(PACKAGES_MESSAGE, field="packages")
    if not MIN_PACKAGES <= value <= MAX_PACKAGES:
        raise InvalidInput(PACKAGES_MESSAGE, field="packages")
    return value


def parse_packages(value: object) -> int:
    """A number of packages as a person gave it: a form's digits or a number."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 7:
            raise InvalidInput(PACKAGES_MESSAGE, field="packages")
        value = int(text)
    return check_packages(value)


def change_quantity(
    session: Session, *, account_id: int, packages: int, now: dt.datetime
) -> Subscription:
    """Set the packages the next renewal grants and charges; this month is unchanged."""
    packages = check_packages(packages)
    ledger.lock_balance(session, account_id=account_id)
    subscription = get_subscription(session, account_id=account_id)
    if subscription.status == SubscriptionStatus.CANCELLED:
        subscription.status = SubscriptionStatus.ACTIVE
        subscription.cancelled_at = None
    subscription.next_quantity = None if packages == subscription.quantity else packages
    return subscription


def cancel(session: Session, *, account_id: int, now: dt.datetime) -> Subscription:
    """No further renewals; tokens already granted stay usable until the next 1st."""
    balance = ledger.lock_balance(session, account_id=account_id)
    subscription = get_subscription(session, account_id=account_id)
    if subscription.status == SubscriptionStatus.CANCELLED:
        return subscription
    account = _account(session, account_id)
    subscription.status = SubscriptionStatus.CANCELLED
    subscription.cancelled_at = now
    figures = account_figures(account, balance, now)
    enqueue(
        session,
        kind="subscription_cancelled",
        now=now,
        account_id=account_id,
        dedupe_key=f"subscription_cancelled:{account_id}:{now.isoformat()}",
        to=account.contact_email,
        context={
            "account_name": account.name,
            "packages": subscription.quantity,
            "balance": balance.balance,
            "ends_on": figures["renews_on"],
        },
    )
    return subscription


# --- buying packages --------------------------------------------------------


def purchase(ctx: Context, *, account_id: int, packages: int, key: str | None = None) -> Invoice:
    """Buy packages now: invoice, charge, and on success the tokens at once.

    With the same ``key`` a retry returns the first invoice and charges nothing
    more. A declined card raises ``PaymentFailed`` and grants nothing.
    """
    packages = check_packages(packages)
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
    invoice = _charge(ctx, invoice.id)
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
    account = _account(session, account_id)
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
    invoice = _new_invoice(
        settings,
        account_id=account_id,
        key=key,
        kind=InvoiceKind.PURCHASE,
        period=current_period(balance, account.timezone, now),
        packages=packages,
        free_tokens=0,
        now=now,
        request_hash=fingerprint,
    )
    session.add(invoice)
    session.flush()
    return invoice


def current_period(balance: Balance, zone: str, now: dt.datetime) -> str:
    """The month tokens bought now belong to: the local month, or the one the ledger has
    already entered if that is later (an account that moved its time zone west)."""
    return max(periods.period_of(now, zone), balance.period or "")


# --- the monthly renewal ----------------------------------------------------


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


def renew(ctx: Context, *, account_id: int) -> Invoice | None:
    """Renew one account for its current month, if that is not done yet.

    Only the current month is renewed, however long the system was down: a
    missed month is never replayed. Returns the renewal invoice (None when
    nothing was charged).
    """
    with ctx.db.uow() as uow:
        invoice = _start_renewal(
            uow.session, ctx.settings, account_id=account_id, now=ctx.clock.now()
        )
        uow.commit()
    if invoice is None or invoice.status != InvoiceStatus.OPEN:
        return invoice
    return _charge(ctx, invoice.id)


def run_renewals(ctx: Context) -> dict[str, int]:
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
            _charge(ctx, invoice_id)
        except Exception:
            log.exception("charging invoice %s failed; it is retried on the next run", invoice_id)
            failed += 1
    return {"accounts": renewed, "retries": len(retries), "errors": failed}


def _start_renewal(
    session: Session, settings: Settings, *, account_id: int, now: dt.datetime
) -> Invoice | None:
    ledger.lock_balance(session, account_id=account_id)
    account = _account(session, account_id)
    subscription = get_subscription(session, account_id=account_id)
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
    free_tokens = free_allowance(settings, account)
    if packages == 0:  # cancelled or never bought: nothing to charge
        _begin_month(session, account, period, now, free_tokens=free_tokens)
        subscription.renewed_period = period
        return None
    invoice = _new_invoice(
        settings,
        account_id=account_id,
        key=f"renewal:{period}",
        kind=InvoiceKind.RENEWAL,
        period=period,
        packages=packages,
        free_tokens=free_tokens,
        now=now,
    )
    session.add(invoice)
    session.flush()
    if invoice.amount_cents == 0:  # the operator gives packages away
        _fulfil(session, invoice, reference=None, now=now)
    return invoice


def _begin_month(
    session: Session,
    account: Account,
    period: str,
    now: dt.datetime,
    *,
    free_tokens: int,
    packages: int = 0,
    package_tokens: int = 0,
    invoice_id: int | None = None,
) -> None:
    """Expire last month's tokens and grant this month's, in that order, as one step.

    The new month is entered first, so the expiry is not mistaken for running
    out: no "low" or "depleted" email for tokens that are about to be replaced.
    """
    expires_at = periods.ends_at(period, account.timezone)
    ledger.start_period(session, account_id=account.id, period=period)
    ledger.expire_grants(
        session,
        account_id=account.id,
        due_by=periods.starts_at(period, account.timezone),
        before_period=period,
        now=now,
    )
    if packages:
        ledger.grant(
            session,
            account_id=account.id,
            amount=packages * package_tokens,
            source=GrantSource.RENEWAL,
            key=f"renewal:{period}",
            period=period,
            now=now,
            expires_at=expires_at,
            invoice_id=invoice_id,
            memo=f"monthly renewal of {packages} packages",
        )
    if free_tokens:
        ledger.grant(
            session,
            account_id=account.id,
            amount=free_tokens,
            source=GrantSource.FREE,
            key=f"free:{period}",
            period=period,
            now=now,
            expires_at=expires_at,
            memo="free monthly allowance",
        )


# --- charging and confirmation ----------------------------------------------


def _charge(ctx: Context, invoice_id: int) -> Invoice:
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
    session: Session, ctx: Context, invoice_id: int
) -> tuple[Invoice, ChargeRequest | None]:
    now = ctx.clock.now()
    invoice = _locked_invoice(session, invoice_id)
    due = invoice.next_attempt_at is None or invoice.next_attempt_at <= now
    if invoice.status != InvoiceStatus.OPEN or not due:
        return invoice, None
    invoice.attempts += 1
    invoice.gateway = ctx.gateway.name
    invoice.next_attempt_at = now + CHARGE_LEASE
    request = ChargeRequest(
        invoice_id=invoice.id,
        account_id=invoice.account_id,
        amount_cents=invoice.amount_cents,
        currency=invoice.currency,
        description=f"Chatmeter {invoice.kind} {invoice.period}: {invoice.packages} packages",
        idempotency_key=f"invoice:{invoice.id}:attempt:{invoice.attempts}",
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
    invoice = _locked_invoice(session, invoice_id)
    if invoice.status != InvoiceStatus.OPEN:
        return invoice
    if result.status == ChargeStatus.SUCCEEDED:
        _fulfil(session, invoice, reference=result.reference, now=now)
    elif result.status == ChargeStatus.PENDING:
        invoice.status = InvoiceStatus.PENDING
        invoice.gateway_reference = result.reference
        invoice.next_attempt_at = None
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
    invoice = _locked_invoice(session, invoice_id)
    if invoice.account_id != account_id:
        raise NotFound("no such invoice", invoice_id=invoice_id)
    if invoice.status == InvoiceStatus.PAID:
        return invoice
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PENDING):
        raise Conflict(f"invoice {invoice.number} is {invoice.status} and cannot be paid")
    _fulfil(session, invoice, reference=reference, now=now)
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
    invoice = _locked_invoice(session, invoice_id)
    if invoice.account_id != account_id:
        raise NotFound("no such invoice", invoice_id=invoice_id)
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PENDING):
        raise Conflict(f"invoice {invoice.number} is {invoice.status}")
    invoice.status = InvoiceStatus.OPEN
    _decline(session, settings, invoice, reason=reason, now=now)
    return invoice


def _fulfil(session: Session, invoice: Invoice, *, reference: str | None, now: dt.datetime) -> None:
    account = _account(session, invoice.account_id)
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = now
    invoice.gateway_reference = reference
    invoice.next_attempt_at = None
    invoice.failure_reason = None
    if invoice.kind == InvoiceKind.PURCHASE:
        _fulfil_purchase(session, account, invoice, now)
    else:
        _fulfil_renewal(session, account, invoice, now)


def _fulfil_purchase(
    session: Session, account: Account, invoice: Invoice, now: dt.datetime
) -> None:
    subscription = get_subscription(session, account_id=account.id)
    period = current_period(
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
    ledger.grant(
        session,
        account_id=account.id,
        amount=invoice.packages * invoice.package_tokens,
        source=GrantSource.PURCHASE,
        key=f"invoice:{invoice.id}",
        period=period,
        now=now,
        expires_at=periods.ends_at(period, account.timezone),
        invoice_id=invoice.id,
        memo=f"purchase of {invoice.packages} packages",
    )
    balance = ledger.lock_balance(session, account_id=account.id)
    figures = account_figures(account, balance, now)
    enqueue(
        session,
        kind="purchase_receipt",
        dedupe_key=f"purchase_receipt:{invoice.id}",
        to=account.contact_email,
        now=now,
        account_id=account.id,
        context={
            "account_name": account.name,
            "invoice_number": invoice.number,
            "packages": invoice.packages,
            "tokens": invoice.tokens,
            "amount": format_cents(invoice.amount_cents),
            "currency": invoice.currency,
            "monthly_packages": subscription.renewing_quantity,
            "monthly_amount": format_cents(
                subscription.renewing_quantity * invoice.unit_price_cents
            ),
            "balance": balance.balance,
            "limit": balance.period_granted,
            "renews_on": figures["renews_on"],
        },
    )


def _fulfil_renewal(session: Session, account: Account, invoice: Invoice, now: dt.datetime) -> None:
    subscription = get_subscription(session, account_id=account.id)
    period = invoice.period
    _begin_month(
        session,
        account,
        period,
        now,
        free_tokens=invoice.free_tokens,
        packages=invoice.packages,
        package_tokens=invoice.package_tokens,
        invoice_id=invoice.id,
    )
    subscription.renewed_period = max(period, subscription.renewed_period or period)
    expires_at = periods.ends_at(period, account.timezone)
    if invoice.amount_cents == 0:
        return
    balance = ledger.lock_balance(session, account_id=account.id)
    enqueue(
        session,
        kind="renewal_receipt",
        dedupe_key=f"renewal_receipt:{invoice.id}",
        to=account.contact_email,
        now=now,
        account_id=account.id,
        context={
            "account_name": account.name,
            "invoice_number": invoice.number,
            "period": period,
            "packages": invoice.packages,
            "tokens": invoice.tokens,
            "free_tokens": invoice.free_tokens,
            "amount": format_cents(invoice.amount_cents),
            "currency": invoice.currency,
            "balance": balance.balance,
            "limit": balance.period_granted,
            "renews_on": _local_date(expires_at, account.timezone),
        },
    )


def _decline(
    session: Session, settings: Settings, invoice: Invoice, *, reason: str, now: dt.datetime
) -> None:
    account = _account(session, invoice.account_id)
    invoice.failure_reason = reason[:500]
    if invoice.kind == InvoiceKind.PURCHASE:
        invoice.status = InvoiceStatus.FAILED
        invoice.next_attempt_at = None
        return
    final = invoice.attempts >= settings.renewal_max_attempts
    if final:
        # Out of retries: the subscription ends and last month's tokens with it.
        invoice.status = InvoiceStatus.FAILED
        invoice.next_attempt_at = None
        subscription = get_subscription(session, account_id=account.id)
        subscription.status = SubscriptionStatus.CANCELLED
        subscription.cancelled_at = now
        subscription.renewed_period = invoice.period
        subscription.quantity = 0
        _begin_month(session, account, invoice.period, now, free_tokens=invoice.free_tokens)
    else:
        invoice.status = InvoiceStatus.OPEN
        invoice.next_attempt_at = now + dt.timedelta(hours=settings.renewal_retry_hours)
    balance: Balance = ledger.lock_balance(session, account_id=account.id)
    enqueue(
        session,
        kind="renewal_failed",
        now=now,
        account_id=account.id,
        dedupe_key=f"renewal_failed:{invoice.id}:{invoice.attempts}",
        to=account.contact_email,
        context={
            "account_name": account.name,
            "invoice_number": invoice.number,
            "period": invoice.period,
            "amount": format_cents(invoice.amount_cents),
            "currency": invoice.currency,
            "reason": invoice.failure_reason,
            "next_attempt_on": None
            if final
            else _local_date(invoice.next_attempt_at, account.timezone),
            "balance": balance.balance,
        },
    )


# --- helpers ------------------------------------------------------------------


def _new_invoice(
    settings: Settings,
    *,
    account_id: int,
    key: str,
    kind: InvoiceKind,
    period: str,
    packages: int,
    free_tokens: int,
    now: dt.datetime,
    request_hash: str = "",
) -> Invoice:
    """An open invoice for ``packages`` at today's price; the price is fixed on it."""
    unit = price_cents(settings.package_price)
    return Invoice(
        account_id=account_id,
        key=key,
        request_hash=request_hash,
        kind=kind,
        period=period,
        packages=packages,
        package_tokens=settings.package_tokens,
        free_tokens=free_tokens,
        unit_price_cents=unit,
        amount_cents=unit * packages,
        currency=settings.currency,
        status=InvoiceStatus.OPEN,
        gateway="",
        attempts=0,
        created_at=now,
    )


def price_cents(price: Decimal) -> int:
    return int((price * 100).to_integral_exact())


def format_cents(cents: int) -> str:
    return f"{cents // 100:,}.{cents % 100:02d}"


def _local_date(instant: dt.datetime | None, zone: str) -> str:
    assert instant is not None
    return instant.astimezone(periods.to_zone(zone)).date().isoformat()


def _account(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound("no such account", account_id=account_id)
    return account


def _locked_invoice(session: Session, invoice_id: int) -> Invoice:
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound("no such invoice", invoice_id=invoice_id)
    ledger.lock_balance(session, account_id=invoice.account_id)
    session.refresh(invoice)
    return invoice
