"""With a tax rate, "Get more tokens" quotes what is charged: net + tax, rounded as the
invoice rounds it, and the invoice charges exactly that."""

from __future__ import annotations

import re
from decimal import Decimal

from playwright.sync_api import expect
from sqlalchemy import select

from chatmeter.billing.models import Invoice
from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.e2e.test_panel import account_of, sign_up
from tests.support.browser import Visit
from tests.support.context import derived
from tests.support.live import LiveServer

EMAIL = "owner@northwind.example"


def test_the_quote_includes_the_tax_that_is_charged(ctx: Context, visit: Visit) -> None:
    taxed = derived(ctx, tax_rate=Decimal("7.5"))
    with LiveServer(create_app(taxed)) as live:
        page = visit.page
        sign_up(page, live, EMAIL)
        page.locator(".tokens-box").get_by_role("button", name="Get more tokens").click()
        window = page.get_by_role("dialog", name="Get more tokens")
        expect(window).to_contain_text("incl. 7.5 % tax")
        expect(window.locator('[data-quote="price"]')).to_have_text("€9.68")  # 9.00 + 0.675↑
        window.get_by_label("How many packages?").fill("3")
        expect(window.locator('[data-quote="price"]')).to_have_text("€29.03")  # 27.00 + 2.025↑
        expect(window.locator('[data-quote="price-button"]')).to_have_text("€29.03")
        window.get_by_role("button", name=re.compile("Confirm and pay")).click()
        expect(window.get_by_role("status")).to_contain_text("15,000 tokens added")

    with taxed.db.read() as session:
        (invoice,) = session.scalars(
            select(Invoice).where(Invoice.account_id == account_of(taxed, EMAIL))
        ).all()
    assert (invoice.amount_cents, invoice.tax_cents) == (2903, 203)
