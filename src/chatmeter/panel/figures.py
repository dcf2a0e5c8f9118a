"""The figures the panel shows, all taken from ``billing.summary`` so they match the ledger."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.billing import refunds, summary
from chatmeter.billing.forecast import Forecast
from chatmeter.billing.invoices import price_cents, rate_text
from chatmeter.billing.models import Invoice
from chatmeter.billing.runway import account_runway
from chatmeter.billing.runway import summary as forecast_summary
from chatmeter.config import Settings
from chatmeter.formatting import local_date, long_date, short_date
from chatmeter.ledger.models import Grant

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹"}


def money_prefix(currency: str) -> str:
    symbol = SYMBOLS.get(currency)
    return symbol if symbol else f"{currency} "


def money(amount: str | Decimal | int, currency: str) -> str:
    """``18.00`` in EUR as ``€18.00``; thousands separated."""
    value = Decimal(str(amount))
    return f"{money_prefix(currency)}{value:,.2f}"


def gauge_percent(balance: int, limit: int) -> int:
    if limit <= 0:
        return 100 if balance > 0 else 0
    return max(0, min(100, round(balance * 100 / limit)))


def had_tokens(session: Session, *, account_id: int) -> bool:
    """Whether the ledger holds a grant for the account (a purchase, a renewal, a gift):
    until then there is nothing to run out of, so no page sounds an alarm."""
    first = session.scalar(select(Grant.id).where(Grant.account_id == account_id).limit(1))
    return first is not None


def dashboard_figures(
    session: Session, *, settings: Settings, account_id: int, timezone: str, now: dt.datetime
) -> dict[str, Any]:
    """The balance as the dashboard, the sidebar and the purchase endpoint show it."""
    figures = summary.balance_summary(session, account_id=account_id, now=now)
    return {
        "balance": figures.balance,
        "available": figures.available,
        "reserved": figures.reserved,
        "limit": figures.limit,
        "used_this_month": figures.used_this_month,
        "percent": gauge_percent(figures.balance, figures.limit),
        "active": figures.active,
        "low": figures.low and figures.active,
        "renews_on": local_date(figures.renews_at, timezone),
        "period": figures.period,
        "had_tokens": had_tokens(session, account_id=account_id),
        "forecast": forecast_figures(
            account_runway(session, settings=settings, account_id=account_id, now=now)
        ),
    }


def forecast_figures(result: Forecast) -> dict[str, Any]:
    """The runway as the dashboard and the "Get more tokens" window show it: the
    "Get more tokens" window starts at the packages that make the tokens last (else 1)."""
    return {
        "ready": result.ready,
        "summary": forecast_summary(result),
        "pace": result.pace,
        "runs_out_on": long_date(result.runs_out_on) if result.runs_out_on else None,
        "renews_on": long_date(result.renews_on),
        "lasts": result.lasts_until_renewal,
        "packages_to_last": result.packages_to_last,
        "recommended": max(1, result.packages_to_last),
        "month_tokens": result.month_tokens,
        "month_packages": result.month_packages,
        "daily": [
            {"day": short_date(d.day, weekday=True), "tokens": d.tokens} for d in result.history
        ],
        "spent_today": result.spent_today,
    }


def billing_figures(
    session: Session, *, settings: Settings, account_id: int, timezone: str, now: dt.datetime
) -> dict[str, Any]:
    plan = summary.subscription_summary(session, settings=settings, account_id=account_id, now=now)
    currency = plan["currency"]
    invoices = []
    for invoice in summary.list_invoices(session, account_id=account_id):
        row = summary.invoice_dict(invoice)
        row["amount_text"] = money(row["amount"], row["currency"])
        row["net_text"] = money(row["net"], row["currency"])
        row["tax_text"] = money(row["tax"], row["currency"])
        row["date"] = local_date(row["created_at"], timezone)
        row["refund_text"] = _refund_text(invoice)
        invoices.append(row)
    return plan | {
        # A subscription to manage: packages now or from the next renewal.
        "subscribed": plan["packages"] > 0 or plan["next_packages"] > 0,
        "monthly_price_text": money(plan["monthly_price"], currency),
        "renews_on": local_date(plan["renews_at"], timezone),
        "unit_price_cents": price_cents(settings.package_price),
        "tax_rate": rate_text(settings.tax_rate),  # added to the monthly price when charged
        "invoices": invoices,
    }


def _refund_text(invoice: Invoice) -> str | None:
    """What the invoice's status pill says of its refunds, if it had any."""
    if refunds.fully_refunded(invoice):
        return "Refunded"
    return "Partly refunded" if invoice.refunded_cents > 0 else None
