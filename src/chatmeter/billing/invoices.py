"""Invoices: a new one at today's price and tax, one locked for a change, and how money reads.

An invoice's money is three integers of cents fixed when it is made, so that every
later reading (the API, the panel, the emails, the PDF) shows the same figures and
each can be checked by hand:

    net    = packages × unit price
    tax    = net × tax rate / 100, rounded half up to the cent
    amount = net + tax  (what is charged)
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import parties, periods
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.config import Settings
from chatmeter.errors import NotFound
from chatmeter.ledger import service as ledger


def new_invoice(
    session: Session,
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
    """An open invoice for ``packages`` at today's price and tax rate, and between the
    parties as they are today (``billing.parties``), all fixed on it; added to the session."""
    unit = price_cents(settings.package_price)
    net = unit * packages
    tax = tax_cents(net, settings.tax_rate)
    issued_to = parties.issued(session, settings, account=account(session, account_id))
    invoice = Invoice(
        account_id=account_id,
        key=key,
        request_hash=request_hash,
        kind=kind,
        period=period,
        packages=packages,
        package_tokens=settings.package_tokens,
        free_tokens=free_tokens,
        rollover_months=settings.rollover_months,
        unit_price_cents=unit,
        amount_cents=net + tax,
        tax_rate=rate_text(settings.tax_rate),
        tax_cents=tax,
        refunded_cents=0,
        currency=settings.currency,
        status=InvoiceStatus.OPEN,
        gateway="",
        attempts=0,
        created_at=now,
        parties=issued_to.dumps(),
    )
    session.add(invoice)
    session.flush()
    return invoice


def locked_invoice(session: Session, invoice_id: int) -> Invoice:
    """The invoice, read again under its account's lock."""
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound("no such invoice", invoice_id=invoice_id)
    ledger.lock_balance(session, account_id=invoice.account_id)
    session.refresh(invoice)
    return invoice


def account(session: Session, account_id: int) -> Account:
    found = session.get(Account, account_id)
    if found is None:
        raise NotFound("no such account", account_id=account_id)
    return found


def price_cents(price: Decimal) -> int:
    return int((price * 100).to_integral_exact())


def tax_cents(net_cents: int, rate: Decimal) -> int:
    """Tax at ``rate`` percent of ``net_cents``, rounded half up to the cent (as by hand)."""
    return int((Decimal(net_cents) * rate / 100).to_integral_value(rounding=ROUND_HALF_UP))


def rate_text(rate: Decimal) -> str:
    """A percent as people write it and the invoice keeps it: ``20``, ``7.5``, ``0``."""
    text = f"{rate:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def net_cents(invoice: Invoice) -> int:
    """What the packages cost before tax: the charged amount less its tax."""
    return invoice.amount_cents - invoice.tax_cents


def format_cents(cents: int) -> str:
    return f"{cents // 100:,}.{cents % 100:02d}"


def local_date(instant: dt.datetime | None, zone: str) -> str:
    assert instant is not None
    return instant.astimezone(periods.to_zone(zone)).date().isoformat()
