"""Invoices and receipts as PDF, and the tax on every invoice, on SQLite and PostgreSQL.

Promises guarded here:

- a new invoice fixes the tax rate of its day: tax = net × rate / 100 rounded half up
  to the cent, amount (what is charged) = net + tax; at 0 % nothing changes;
- the API's invoice JSON, the billing page, the receipt page, the receipt emails and
  the PDF show the same net, tax and total, each checkable by hand;
- the PDF (read back with pdfium) carries the number, the dates in the account's time
  zone, the seller, the customer, the period, packages × tokens, unit price, subtotal,
  the tax line, total, currency and status (paid on, due, failed, void, refunded), a
  renewal's free tokens at 0.00; it renders names outside Latin-1; the same invoice
  gives the same bytes;
- ``GET /api/v1/invoices/{id}/pdf`` and ``.../receipt.pdf`` (409 unless paid), the
  panel's ``/panel/billing/invoices/{id}.pdf`` and ``.../receipt.pdf``: a PDF
  attachment named after the invoice; another account's invoice is 404 everywhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account, User
from chatmeter.billing import purchases, renewals
from chatmeter.billing.documents import describe, invoice_file
from chatmeter.billing.invoices import new_invoice
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.billing.parties import Parties
from chatmeter.billing.pdf import invoice_pdf
from chatmeter.context import Context
from chatmeter.notifications.models import OutboxMessage
from chatmeter.notifications.templates import render as render_email
from tests.support.accounts import new_account
from tests.support.api import caller
from tests.support.panel import new_panel

SELLER = {
    "business_name": "Chatmeter SAS",
    "business_address": "12 rue de la Paix\\n75002 Paris\\nFrance",
    "business_tax_id": "FR 12 345678901",
}


# --- helpers --------------------------------------------------------------------------


def taxed(ctx: Context, rate: str, **settings: Any) -> Context:
    """The test's context with the seller's details and a tax rate."""
    changed = ctx.settings.model_copy(update=SELLER | {"tax_rate": Decimal(rate)} | settings)
    return dataclasses.replace(ctx, settings=changed)


def pdf_text(content: bytes) -> str:
    """The text of every page, its whitespace runs made single spaces."""
    assert content.startswith(b"%PDF-")
    document = pdfium.PdfDocument(content)
    try:
        pages = []
        for page in document:
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
        assert len(pages) == 1, "an invoice fits on one page"
        return " ".join(" ".join(pages).split())
    finally:
        document.close()


def invoice_of(ctx: Context, invoice_id: int) -> Invoice:
    with ctx.db.read() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        return invoice


def document(ctx: Context, invoice: Invoice, *, receipt: bool = False) -> str:
    with ctx.db.read() as session:
        found = invoice_file(
            session,
            ctx.settings,
            account_id=invoice.account_id,
            invoice_id=invoice.id,
            receipt=receipt,
        )
    assert found.filename == f"{invoice.number}{'-receipt' if receipt else ''}.pdf"
    return pdf_text(found.content)


def api_client(ctx: Context, email: str = "owner@example.com") -> tuple[int, TestClient]:
    from chatmeter.web.app import create_app

    app = TestClient(create_app(ctx))
    who = caller(ctx, app, email)
    return who.account_id, who.client


def name_account(ctx: Context, account_id: int, name: str) -> None:
    with ctx.db.uow() as uow:
        account = uow.session.get(Account, account_id)
        assert account is not None
        account.name = name
        uow.commit()


def set_invoice(ctx: Context, invoice_id: int, **columns: Any) -> None:
    """Put an invoice in a state the gateway would (failed, void, refunded)."""
    with ctx.db.uow() as uow:
        invoice = uow.session.get(Invoice, invoice_id)
        assert invoice is not None
        for column, value in columns.items():
            setattr(invoice, column, value)
        uow.commit()


def receipt_email(ctx: Context, kind: str) -> Any:
    with ctx.db.read() as session:
        message = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        ).all()[-1]
    return render_email(kind, json.loads(message.context), base_url="http://127.0.0.1:8000")


# --- tax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "packages", "net", "tax", "total"),
    [
        ("0", 2, 1800, 0, 1800),
        ("20", 2, 1800, 360, 2160),
        ("7.5", 2, 1800, 135, 1935),
        ("7.5", 1, 900, 68, 968),  # 67.5 cents: half up
        ("19.25", 3, 2700, 520, 3220),  # 519.75 cents
    ],
)
def test_a_new_invoice_fixes_its_tax_and_charges_net_plus_tax(
    ctx: Context, rate: str, packages: int, net: int, tax: int, total: int
) -> None:
    ctx = taxed(ctx, rate)
    account = new_account(ctx)
    invoice = purchases.purchase(ctx, account_id=account, packages=packages, key="buy-1")
    assert invoice.status == InvoiceStatus.PAID
    assert (invoice.tax_rate, invoice.tax_cents, invoice.amount_cents) == (rate, tax, total)
    assert invoice.amount_cents - invoice.tax_cents == packages * invoice.unit_price_cents == net

    # A later change of rate leaves the invoice as it was made.
    later = taxed(ctx, "50")
    assert document(later, invoice_of(later, invoice.id)) == document(ctx, invoice)


def test_the_api_the_panel_and_the_receipt_email_show_the_same_figures(ctx: Context) -> None:
    ctx = taxed(ctx, "20")
    panel = new_panel(ctx)
    panel.sign_up()
    bought = panel.buy(2)
    assert bought.status_code == 200, bought.text
    assert bought.json()["invoice"]["amount"] == "€21.60"
    with ctx.db.read() as session:
        invoice = session.scalars(select(Invoice)).one()

    with ctx.db.uow() as uow:
        key = accounts.issue_api_key(
            uow.session, account_id=invoice.account_id, now=ctx.clock.now()
        )
        uow.commit()
    api = TestClient(panel.client.app, headers={"Authorization": f"Bearer {key}"})
    (row,) = api.get("/api/v1/invoices").json()
    assert {k: row[k] for k in ("unit_price", "net", "tax_rate", "tax", "amount", "currency")} == {
        "unit_price": "9.00",
        "net": "18.00",
        "tax_rate": "20",
        "tax": "3.60",
        "amount": "21.60",
        "currency": "EUR",
    }

    billing = panel.client.get("/panel/billing").text
    assert "€21.60" in billing and "€18.00 + €3.60 tax" in billing
    assert "from the next renewal, plus 20 % tax." in billing
    assert f'href="/panel/billing/invoices/{invoice.id}.pdf"' in billing
    receipt = panel.client.get(f"/panel/billing/invoices/{invoice.id}").text
    assert "2 × €9.00 = €18.00" in receipt
    assert "Tax 20 %</dt><dd>€3.60" in receipt and "<strong>€21.60</strong>" in receipt
    assert f'href="/panel/billing/invoices/{invoice.id}/receipt.pdf"' in receipt

    email = receipt_email(ctx, "purchase_receipt")
    for text in (email.text, email.html):
        assert "18.00 EUR" in text and "3.60 EUR" in text and "21.60 EUR" in text
    assert "Price: 18.00 EUR\nTax 20 %: 3.60 EUR\nPaid: 21.60 EUR" in email.text
    assert "plus 20 % tax" in email.text

    pdf = document(ctx, invoice)
    assert "Subtotal 18.00 Tax 20 % 3.60 Total (EUR) 21.60" in pdf


def test_without_tax_the_receipt_email_has_no_tax_line(ctx: Context) -> None:
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1, key="buy-1")
    email = receipt_email(ctx, "purchase_receipt")
    assert "Paid: 9.00 EUR" in email.text
    assert "Tax" not in email.text and "Tax" not in email.html and "tax" not in email.text


# --- the document ----------------------------------------------------------------------


def test_an_invoice_pdf_has_every_field_in_the_accounts_time_zone(ctx: Context) -> None:
    ctx = taxed(ctx, "7.5")
    ctx.clock.set(dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC))  # 1 December in Paris
    account = new_account(ctx, timezone="Europe/Paris")
    name_account(ctx, account, "Boulangerie Dupont")
    invoice = purchases.purchase(ctx, account_id=account, packages=3, key="buy-1")
    assert invoice.number == f"CM-2026-{invoice.id:06d}"

    text = document(ctx, invoice)
    for expected in (
        f"Invoice {invoice.number}",
        "Issue date 1 December 2026",
        "Period December 2026",
        "Type Purchase",
        "Chatmeter SAS 12 rue de la Paix 75002 Paris France Tax ID: FR 12 345678901",
        # No billing details yet: the account's name and contact email.
        "BILLED TO Boulangerie Dupont owner@example.com",
        "Token packages, bought in December 2026",
        "3 packages × 5,000 = 15,000 tokens",
        "9.00 27.00",
        "Subtotal 27.00 Tax 7.5 % 2.03 Total (EUR) 29.03",  # 202.5 cents: half up
        "STATUS Paid on 1 December 2026",
        "All amounts in EUR",
    ):
        assert expected in text, expected
    assert "Payment date" not in text

    receipt = document(ctx, invoice, receipt=True)
    assert f"Receipt {invoice.number}" in receipt
    assert "Issue date 1 December 2026 Payment date 1 December 2026" in receipt


def test_a_tax_of_zero_shows_a_zero_tax_line(ctx: Context) -> None:
    account = new_account(ctx)
    invoice = purchases.purchase(ctx, account_id=account, packages=1, key="buy-1")
    text = document(ctx, invoice)
    assert "Subtotal 9.00 Tax 0 % 0.00 Total (EUR) 9.00" in text
    assert "BILLED TO" in text and "Chatmeter" in text  # the default business name


def test_a_renewal_lists_its_free_tokens_at_no_charge(ctx: Context) -> None:
    ctx = taxed(ctx, "20", free_tokens=1000)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2, key="buy-1")
    ctx.clock.set(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    renewals.run_renewals(ctx)
    with ctx.db.read() as session:
        renewal = session.scalars(select(Invoice).where(Invoice.kind == InvoiceKind.RENEWAL)).one()
    assert (renewal.packages, renewal.free_tokens, renewal.amount_cents) == (2, 1000, 2160)

    text = document(ctx, renewal, receipt=True)
    for expected in (
        "Period December 2026",
        "Type Monthly renewal",
        "Token packages, renewal for December 2026",
        "2 packages × 5,000 = 10,000 tokens",
        "Free tokens for December 2026 1,000 tokens 0.00 0.00",
        "Subtotal 18.00 Tax 20 % 3.60 Total (EUR) 21.60",
        "Paid on 1 December 2026",
    ):
        assert expected in text, expected

    email = receipt_email(ctx, "renewal_receipt")
    assert "Price: 18.00 EUR\nTax 20 %: 3.60 EUR\nPaid: 21.60 EUR" in email.text


def test_an_issued_invoice_keeps_its_seller_and_customer_whatever_changes_later(
    ctx: Context,
) -> None:
    """Renamed business, moved customer: the invoices issued before read as issued, the
    renewal issued after shows the new parties."""
    ctx = taxed(ctx, "20")
    account = new_account(ctx)
    name_account(ctx, account, "Old Shop")
    bought = purchases.purchase(ctx, account_id=account, packages=1, key="buy-1")
    with ctx.db.read() as session:
        issued = invoice_file(
            session, ctx.settings, account_id=account, invoice_id=bought.id, receipt=False
        )

    moved = taxed(ctx, "20", business_name="Chatmeter GmbH", business_address="Hauptstr. 1")
    name_account(moved, account, "New Shop")
    with moved.db.read() as session:
        later = invoice_file(
            session, moved.settings, account_id=account, invoice_id=bought.id, receipt=False
        )
    assert later.content == issued.content  # the same bytes, a year from now too
    text = pdf_text(later.content)
    assert "Chatmeter SAS 12 rue de la Paix 75002 Paris France" in text
    assert "BILLED TO Old Shop" in text and "New Shop" not in text

    moved.clock.set(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    renewals.run_renewals(moved)
    with moved.db.read() as session:
        renewal = session.scalars(select(Invoice).where(Invoice.kind == InvoiceKind.RENEWAL)).one()
    renewed = document(moved, renewal)
    assert "Chatmeter GmbH Hauptstr. 1" in renewed and "BILLED TO New Shop" in renewed
    assert "Chatmeter SAS" not in renewed


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"status": InvoiceStatus.OPEN, "paid_at": None}, "STATUS Due"),
        ({"status": InvoiceStatus.PENDING, "paid_at": None}, "STATUS Due"),
        (
            {"status": InvoiceStatus.FAILED, "paid_at": None, "failure_reason": "card declined"},
            "STATUS Payment failed Reason: card declined",
        ),
        ({"status": InvoiceStatus.VOID, "paid_at": None}, "STATUS Void: nothing is due"),
        (
            {"refunded_cents": 500, "refunded_at": dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)},
            "STATUS Paid on 15 November 2026 Refunded 5.00 EUR on 20 November 2026",
        ),
        (
            {"refunded_cents": 1080, "refunded_at": dt.datetime(2026, 11, 21, 9, tzinfo=dt.UTC)},
            "Refunded 10.80 EUR (in full) on 21 November 2026",
        ),
    ],
)
def test_the_status_says_what_became_of_the_invoice(
    ctx: Context, columns: dict[str, Any], expected: str
) -> None:
    ctx = taxed(ctx, "20")
    account = new_account(ctx)
    invoice = purchases.purchase(ctx, account_id=account, packages=1, key="buy-1")
    set_invoice(ctx, invoice.id, **columns)
    text = document(ctx, invoice_of(ctx, invoice.id))
    assert expected in text
    assert "Total (EUR) 10.80" in text


def test_a_top_up_says_so(ctx: Context) -> None:
    """Top-ups are made by auto top-up; their invoice reads like any other, named as such."""
    when = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)
    ctx = taxed(ctx, "20")
    account_id = new_account(ctx)
    with ctx.db.uow() as uow:  # never committed: the document is all this test reads
        invoice = new_invoice(
            uow.session,
            ctx.settings,
            account_id=account_id,
            key="topup:1",
            kind=InvoiceKind.TOPUP,
            period="2026-11",
            packages=1,
            free_tokens=0,
            now=when,
        )
        account = uow.session.get(Account, account_id)
        assert account is not None and invoice.parties is not None
        issued_to = Parties.loads(invoice.parties)
        described = describe(invoice, account=account, issued_to=issued_to, receipt=False)
    text = pdf_text(invoice_pdf(described))
    assert f"Invoice CM-2026-{invoice.id:06d}" in text and "Type Top-up" in text
    assert "Token packages, top-up in November 2026 1 package × 5,000 = 5,000 tokens" in text
    assert "Subtotal 9.00 Tax 20 % 1.80 Total (EUR) 10.80 STATUS Due" in text


def test_names_beyond_latin_1_render_and_the_output_is_the_same_every_time(
    ctx: Context,
) -> None:
    ctx = taxed(ctx, "20", business_name="Чатметр ООО")
    account = new_account(ctx)
    name_account(ctx, account, "Łódź Café — Ωμέγα")
    invoice = purchases.purchase(ctx, account_id=account, packages=1, key="buy-1")
    with ctx.db.read() as session:
        first = invoice_file(
            session, ctx.settings, account_id=account, invoice_id=invoice.id, receipt=False
        )
    ctx.clock.set(dt.datetime(2027, 3, 1, tzinfo=dt.UTC))  # downloaded months later
    with ctx.db.read() as session:
        again = invoice_file(
            session, ctx.settings, account_id=account, invoice_id=invoice.id, receipt=False
        )
    assert first.content == again.content
    text = pdf_text(first.content)
    assert "Чатметр ООО" in text and "BILLED TO Łódź Café — Ωμέγα" in text
    creation = re.search(rb"/CreationDate \(D:(\d{14})", first.content)
    assert creation is not None and creation[1] == b"20261115120000"


# --- the routes -------------------------------------------------------------------------


def test_the_api_gives_an_accounts_own_invoices_as_pdf(ctx: Context) -> None:
    ctx = taxed(ctx, "20")
    alice, alice_api = api_client(ctx, "alice@example.com")
    bob, bob_api = api_client(ctx, "bob@example.com")
    paid = alice_api.post("/api/v1/purchases", json={"packages": 2}).json()
    pending = purchases.purchase(
        dataclasses.replace(ctx, gateway=_never_approves()), account_id=alice, packages=1
    )

    response = alice_api.get(f"/api/v1/invoices/{paid['id']}/pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{paid["number"]}.pdf"'
    )
    assert f"Invoice {paid['number']}" in pdf_text(response.content)
    receipt = alice_api.get(f"/api/v1/invoices/{paid['id']}/receipt.pdf")
    assert receipt.status_code == 200 and receipt.headers["content-type"] == "application/pdf"
    assert f"Receipt {paid['number']}" in pdf_text(receipt.content)

    unpaid = alice_api.get(f"/api/v1/invoices/{pending.id}/receipt.pdf")
    assert unpaid.status_code == 409
    assert unpaid.json()["error"]["code"] == "conflict"
    assert alice_api.get(f"/api/v1/invoices/{pending.id}/pdf").status_code == 200

    for path in (
        f"/api/v1/invoices/{paid['id']}/pdf",
        f"/api/v1/invoices/{paid['id']}/receipt.pdf",
    ):
        theirs = bob_api.get(path)
        assert theirs.status_code == 404
        assert theirs.json()["error"]["code"] == "not_found"
    assert bob_api.get("/api/v1/invoices/999999/pdf").status_code == 404
    assert bob_api.get("/api/v1/invoices/0/pdf").status_code == 422
    assert TestClient(alice_api.app).get(f"/api/v1/invoices/{paid['id']}/pdf").status_code == 401
    assert bob != alice


def test_the_panel_gives_its_own_invoices_as_pdf_and_hides_others(ctx: Context) -> None:
    panel = new_panel(ctx)
    panel.sign_up("owner@example.com")
    assert panel.buy(2).status_code == 200
    with ctx.db.read() as session:
        (invoice,) = session.scalars(select(Invoice)).all()

    for path, title in (
        (f"/panel/billing/invoices/{invoice.id}.pdf", "Invoice"),
        (f"/panel/billing/invoices/{invoice.id}/receipt.pdf", "Receipt"),
    ):
        response = panel.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "application/pdf"
        suffix = "-receipt" if title == "Receipt" else ""
        assert response.headers["content-disposition"] == (
            f'attachment; filename="{invoice.number}{suffix}.pdf"'
        )
        assert f"{title} {invoice.number}" in pdf_text(response.content)
    # The invoice's page is still the page, not the PDF.
    assert (
        "text/html"
        in panel.client.get(f"/panel/billing/invoices/{invoice.id}").headers["content-type"]
    )

    other = new_panel(ctx)
    other.sign_up("stranger@example.com")
    for path in (
        f"/panel/billing/invoices/{invoice.id}.pdf",
        f"/panel/billing/invoices/{invoice.id}/receipt.pdf",
        "/panel/billing/invoices/99999.pdf",
        "/panel/billing/invoices/abc.pdf",
        "/panel/billing/invoices/%C2%B2.pdf",  # a digit, but not one int() reads
        "/panel/billing/invoices/%C2%B2",
        "/panel/billing/invoices/99999999999999999999.pdf",
    ):
        response = other.client.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text
        assert "application/pdf" not in response.headers["content-type"]

    nobody = new_panel(ctx)
    signed_out = nobody.client.get(
        f"/panel/billing/invoices/{invoice.id}.pdf", follow_redirects=False
    )
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/panel/sign-in"


def test_a_members_panel_downloads_invoices_too(ctx: Context) -> None:
    panel = new_panel(ctx)
    panel.sign_up()
    assert panel.buy(1).status_code == 200
    with ctx.db.uow() as uow:
        user = uow.session.scalars(select(User)).one()
        user.role = "member"
        uow.commit()
    with ctx.db.read() as session:
        invoice = session.scalars(select(Invoice)).one()
    response = panel.client.get(f"/panel/billing/invoices/{invoice.id}.pdf")
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")


def _never_approves() -> Any:
    from chatmeter.billing.gateways import ManualGateway

    return ManualGateway(auto_approve=False)
