"""An invoice or a receipt in words and figures, ready for ``billing.pdf`` to draw.

Every figure comes from the invoice's own columns, fixed when it was made (price, tax
rate, tax, amount), so a PDF downloaded today or in a year shows what was charged,
and each line can be checked by hand: packages × package tokens = tokens, packages ×
unit price = subtotal, subtotal × rate = tax (rounded half up), subtotal + tax = total.

Who the invoice is from (the operator's settings, ``CHATMETER_BUSINESS_*``) and who it
is to (the customer's billing details) are the invoice's own too, fixed when it was
issued (``billing.parties``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import parties
from chatmeter.billing.invoices import format_cents, net_cents
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.billing.pdf import InvoiceDocument, Line, invoice_pdf
from chatmeter.config import Settings
from chatmeter.errors import Conflict, NotFound
from chatmeter.formatting import local_date, month_name, plural, thousands

NOT_PAID = "only a paid invoice has a receipt; download the invoice instead"
KINDS = {
    InvoiceKind.RENEWAL: "Monthly renewal",
    InvoiceKind.PURCHASE: "Purchase",
    InvoiceKind.TOPUP: "Top-up",
}


@dataclass(frozen=True)
class PdfFile:
    filename: str
    content: bytes


def invoice_file(
    session: Session, settings: Settings, *, account_id: int, invoice_id: int, receipt: bool
) -> PdfFile:
    """The account's invoice (or its receipt) as a PDF; another account's is not found."""
    invoice = session.get(Invoice, invoice_id)
    account = session.get(Account, account_id)
    if invoice is None or account is None or invoice.account_id != account_id:
        raise NotFound("no such invoice", invoice_id=invoice_id)
    if receipt and invoice.status != InvoiceStatus.PAID:
        raise Conflict(NOT_PAID, invoice_id=invoice_id, status=invoice.status)
    issued_to = parties.of(session, settings, invoice_parties=invoice.parties, account=account)
    document = describe(invoice, account=account, issued_to=issued_to, receipt=receipt)
    suffix = "-receipt" if receipt else ""
    return PdfFile(f"{invoice.number}{suffix}.pdf", invoice_pdf(document))


def describe(
    invoice: Invoice,
    *,
    account: Account,
    issued_to: parties.Parties,
    receipt: bool,
) -> InvoiceDocument:
    """The invoice (or, once paid, its receipt) in words and formatted figures."""
    zone = account.timezone
    facts = [("Issue date", local_date(invoice.created_at, zone))]
    if receipt and invoice.paid_at is not None:
        facts.append(("Payment date", local_date(invoice.paid_at, zone)))
    facts += [
        ("Period", month_name(invoice.period)),
        ("Type", KINDS.get(InvoiceKind(invoice.kind), invoice.kind)),
    ]
    return InvoiceDocument(
        title="Receipt" if receipt else "Invoice",
        number=invoice.number,
        facts=tuple(facts),
        seller=issued_to.seller,
        customer=issued_to.customer,
        lines=lines(invoice),
        subtotal=format_cents(net_cents(invoice)),
        tax_label=f"Tax {invoice.tax_rate} %",
        tax=format_cents(invoice.tax_cents),
        total=format_cents(invoice.amount_cents),
        currency=invoice.currency,
        status=status(invoice, zone),
        created_at=(invoice.paid_at if receipt and invoice.paid_at else invoice.created_at),
    )


def lines(invoice: Invoice) -> tuple[Line, ...]:
    """The packages, then the month's free tokens (a renewal's), which cost nothing."""
    month = month_name(invoice.period)
    what = {
        InvoiceKind.RENEWAL: f"renewal for {month}",
        InvoiceKind.PURCHASE: f"bought in {month}",
        InvoiceKind.TOPUP: f"top-up in {month}",
    }.get(InvoiceKind(invoice.kind), month)
    tokens = invoice.packages * invoice.package_tokens
    rows = [
        Line(
            description=f"Token packages, {what}",
            quantity=(
                f"{plural(invoice.packages, 'package')} × {thousands(invoice.package_tokens)}"
                f" = {thousands(tokens)} tokens"
            ),
            unit_price=format_cents(invoice.unit_price_cents),
            amount=format_cents(invoice.packages * invoice.unit_price_cents),
        )
    ]
    if invoice.free_tokens:
        rows.append(
            Line(
                description=f"Free tokens for {month}",
                quantity=f"{thousands(invoice.free_tokens)} tokens",
                unit_price=format_cents(0),
                amount=format_cents(0),
            )
        )
    return tuple(rows)


def status(invoice: Invoice, zone: str) -> tuple[str, ...]:
    """What became of the invoice: paid (and when), due, failed (and why), void; and any
    refund."""
    rows: list[str]
    if invoice.status == InvoiceStatus.PAID:
        rows = [f"Paid on {local_date(invoice.paid_at, zone)}" if invoice.paid_at else "Paid"]
    elif invoice.status == InvoiceStatus.FAILED:
        rows = ["Payment failed"]
        if invoice.failure_reason:
            rows.append(f"Reason: {invoice.failure_reason}")
    elif invoice.status == InvoiceStatus.VOID:
        rows = ["Void: nothing is due"]
    else:
        rows = ["Due"]
    if invoice.refunded_cents > 0:
        refund = f"Refunded {format_cents(invoice.refunded_cents)} {invoice.currency}"
        if invoice.refunded_cents >= invoice.amount_cents:
            refund += " (in full)"
        if invoice.refunded_at is not None:
            refund += f" on {local_date(invoice.refunded_at, zone)}"
        rows.append(refund)
    return tuple(rows)
