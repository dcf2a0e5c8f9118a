"""The figures a customer sees, each one checkable against the ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods
from chatmeter.billing.invoices import format_cents, net_cents, price_cents
from chatmeter.billing.models import Invoice, Subscription, SubscriptionStatus
from chatmeter.billing.subscriptions import free_allowance
from chatmeter.config import Settings
from chatmeter.errors import NotFound
from chatmeter.ledger.models import Balance, LedgerEntry
from chatmeter.ledger.thresholds import is_low


@dataclass(frozen=True)
class BalanceSummary:
    balance: int
    available: int
    reserved: int
    limit: int
    used_this_month: int
    period: str
    renews_at: dt.datetime
    active: bool
    low: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def balance_summary(session: Session, *, account_id: int, now: dt.datetime) -> BalanceSummary:
    account = session.get(Account, account_id)
    balance = session.get(Balance, account_id)
    if account is None or balance is None:
        raise NotFound("no such account", account_id=account_id)
    period = periods.period_of(now, account.timezone)
    # A month with no grant yet (renewal still under way) has a limit of 0.
    limit = balance.period_granted if balance.period == period else 0
    used = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.consumed), 0)).where(
            LedgerEntry.account_id == account_id,
            LedgerEntry.created_at >= periods.starts_at(period, account.timezone),
        )
    )
    return BalanceSummary(
        balance=balance.balance,
        available=balance.available,
        reserved=balance.reserved,
        limit=limit,
        used_this_month=int(used or 0),
        period=period,
        renews_at=periods.ends_at(period, account.timezone),
        active=is_active(balance),
        low=is_low(balance.balance, limit),
    )


def is_active(balance: Balance) -> bool:
    """The one rule: an account's assistants are live while it has tokens available."""
    return balance.available > 0


def subscription_summary(
    session: Session, *, settings: Settings, account_id: int, now: dt.datetime
) -> dict[str, Any]:
    account = session.get(Account, account_id)
    subscription = session.get(Subscription, account_id)
    if account is None or subscription is None:
        raise NotFound("no such account", account_id=account_id)
    unit = price_cents(settings.package_price)
    renewing = subscription.renewing_quantity
    period = periods.period_of(now, account.timezone)
    return {
        "status": str(subscription.status),
        "packages": subscription.quantity,
        "next_packages": renewing,
        "package_tokens": settings.package_tokens,
        "monthly_tokens": renewing * settings.package_tokens + free_allowance(settings, account),
        "monthly_price": format_cents(renewing * unit),
        "currency": settings.currency,
        "renews_at": periods.ends_at(period, account.timezone),
        "cancelled": subscription.status == SubscriptionStatus.CANCELLED,
    }


def invoice_dict(invoice: Invoice) -> dict[str, Any]:
    """An invoice's figures: ``net`` (packages × ``unit_price``) + ``tax`` (``tax_rate``
    percent of it, rounded half up) = ``amount``, what is charged."""
    return {
        "id": invoice.id,
        "number": invoice.number,
        "kind": invoice.kind,
        "status": invoice.status,
        "period": invoice.period,
        "packages": invoice.packages,
        "tokens": invoice.tokens,
        "unit_price": format_cents(invoice.unit_price_cents),
        "net": format_cents(net_cents(invoice)),
        "tax_rate": invoice.tax_rate,
        "tax": format_cents(invoice.tax_cents),
        "amount": format_cents(invoice.amount_cents),
        "currency": invoice.currency,
        "created_at": invoice.created_at,
        "paid_at": invoice.paid_at,
        "failure_reason": invoice.failure_reason,
        "refunded": format_cents(invoice.refunded_cents),
        "refunded_at": invoice.refunded_at,
        "rollover_months": invoice.rollover_months,
    }


def list_invoices(session: Session, *, account_id: int, limit: int = 100) -> list[Invoice]:
    return list(
        session.scalars(
            select(Invoice)
            .where(Invoice.account_id == account_id)
            .order_by(Invoice.id.desc())
            .limit(limit)
        )
    )
