"""The emails billing sends: receipts, a failed renewal, a cancelled subscription.

Each is queued in the outbox in the transaction of the change it reports, so
the email goes out if and only if that change was committed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods
from chatmeter.billing.invoices import format_cents, local_date, net_cents
from chatmeter.billing.models import Invoice, Subscription
from chatmeter.config import Settings
from chatmeter.ledger.models import Balance
from chatmeter.notifications.balance_notices import account_figures
from chatmeter.notifications.outbox import enqueue


def subscription_cancelled(
    session: Session,
    *,
    account: Account,
    subscription: Subscription,
    balance: Balance,
    now: dt.datetime,
) -> None:
    figures = account_figures(account, balance, now)
    enqueue(
        session,
        kind="subscription_cancelled",
        now=now,
        account_id=account.id,
        dedupe_key=f"subscription_cancelled:{account.id}:{now.isoformat()}",
        to=account.contact_email,
        context={
            "account_name": account.name,
            "packages": subscription.quantity,
            "balance": balance.balance,
            "ends_on": figures["renews_on"],
        },
    )


def purchase_receipt(
    session: Session,
    *,
    account: Account,
    invoice: Invoice,
    subscription: Subscription,
    balance: Balance,
    now: dt.datetime,
) -> None:
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
            **tax_figures(invoice),
            "monthly_packages": subscription.renewing_quantity,
            "monthly_amount": format_cents(
                subscription.renewing_quantity * invoice.unit_price_cents
            ),
            "balance": balance.balance,
            "limit": balance.period_granted,
            "renews_on": figures["renews_on"],
        },
    )


def renewal_receipt(
    session: Session, *, account: Account, invoice: Invoice, balance: Balance, now: dt.datetime
) -> None:
    expires_at = periods.ends_at(invoice.period, account.timezone)
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
            "period": invoice.period,
            "packages": invoice.packages,
            "tokens": invoice.tokens,
            "free_tokens": invoice.free_tokens,
            "amount": format_cents(invoice.amount_cents),
            "currency": invoice.currency,
            **tax_figures(invoice),
            "balance": balance.balance,
            "limit": balance.period_granted,
            "renews_on": local_date(expires_at, account.timezone),
        },
    )


def tax_figures(invoice: Invoice) -> dict[str, str | None]:
    """The receipt's tax line: price before tax, the rate and the tax; ``tax_rate`` is None
    for an invoice without tax, whose receipt shows no tax line."""
    if invoice.tax_cents == 0 and invoice.tax_rate in ("", "0"):
        return {"net": None, "tax_rate": None, "tax": None}
    return {
        "net": format_cents(net_cents(invoice)),
        "tax_rate": invoice.tax_rate,
        "tax": format_cents(invoice.tax_cents),
    }


def renewal_failed(
    session: Session,
    *,
    account: Account,
    invoice: Invoice,
    final: bool,
    balance: Balance,
    now: dt.datetime,
) -> None:
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
            else local_date(invoice.next_attempt_at, account.timezone),
            "balance": balance.balance,
        },
    )


def payment_action_required(
    session: Session, settings: Settings, *, account: Account, invoice: Invoice, now: dt.datetime
) -> None:
    """The bank asks the cardholder to confirm a charge (3-D Secure): a link to do it."""
    enqueue(
        session,
        kind="payment_action_required",
        now=now,
        account_id=account.id,
        dedupe_key=f"payment_action_required:{invoice.id}:{invoice.attempts}",
        to=account.contact_email,
        context={
            "account_name": account.name,
            "invoice_number": invoice.number,
            "packages": invoice.packages,
            "tokens": invoice.tokens,
            "amount": format_cents(invoice.amount_cents),
            "currency": invoice.currency,
            "pay_url": f"{settings.base_url.rstrip('/')}/panel/billing/invoices/{invoice.id}/pay",
        },
    )


def refund_issued(
    session: Session,
    *,
    account: Account,
    invoice: Invoice,
    refunded_cents: int,
    tokens_share: int | None,
    tokens_removed: int,
    balance: Balance,
    now: dt.datetime,
) -> None:
    """Money came back on the invoice: ``refunded_cents`` now, its total on the invoice.

    A partial refund states the share of the invoice's tokens it takes back
    (``tokens_share``) and how many of them were still unspent (``tokens_removed``), so
    each figure can be checked against the invoice and the ledger.
    """
    enqueue(
        session,
        kind="refund_issued",
        now=now,
        account_id=account.id,
        # One email per refund: the total refunded so far names it.
        dedupe_key=f"refund_issued:{invoice.id}:{invoice.refunded_cents}",
        to=account.contact_email,
        context={
            "account_name": account.name,
            "invoice_number": invoice.number,
            "amount": format_cents(refunded_cents),
            "currency": invoice.currency,
            "in_full": tokens_share is None,
            "refunded_total": format_cents(invoice.refunded_cents),
            "invoice_amount": format_cents(invoice.amount_cents),
            "invoice_tokens": invoice.packages * invoice.package_tokens,
            "tokens_share": tokens_share or 0,
            "tokens_removed": tokens_removed,
            "balance": balance.balance,
        },
    )
