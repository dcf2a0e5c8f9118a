"""Paying by card through Stripe, in the browser: a new customer opens "Get more tokens",
chooses 2 packages, pays on Stripe's (fake) hosted page, comes back to the billing page,
and sees 10,000 more tokens arrive without a reload once Stripe's webhook, delivered over
loopback by the fake, confirms the payment."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.e2e.test_panel import account_of, balance, sign_up
from tests.support.browser import Visit
from tests.support.fake_stripe import FakeStripe
from tests.support.ledger import assert_ledger_clean
from tests.support.live import LiveServer
from tests.support.payments import with_stripe

EMAIL = "owner@northwind.example"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def shop(ctx: Context, fake: FakeStripe) -> Iterator[tuple[Context, LiveServer]]:
    """The app with the Stripe gateway, its base URL its own loopback address."""
    made: list[Context] = []

    def app_at(url: str) -> object:
        made.append(with_stripe(ctx, fake, base_url=url))
        return create_app(made[0])

    with LiveServer(factory=app_at) as server:
        fake.webhook_url = f"{server.url}/webhooks/stripe"
        yield made[0], server


def test_a_new_customer_pays_on_stripes_page_and_sees_the_tokens_arrive(
    shop: tuple[Context, LiveServer], fake: FakeStripe, visit: Visit
) -> None:
    stripe_ctx, live = shop
    page = visit.page
    sign_up(page, live, EMAIL)
    account = account_of(stripe_ctx, EMAIL)

    page.locator(".tokens-box").get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    window.get_by_label("How many packages?").fill("2")
    expect(window.locator('[data-quote="price"]')).to_have_text("€18.00")
    window.get_by_role("button", name=re.compile("Confirm and pay")).click()

    # Stripe's hosted page (the fake's): the amount, a card, Pay.
    expect(page).to_have_url(re.compile(rf"^{re.escape(fake.url)}/pay/cs_test_"))
    expect(page.get_by_role("heading")).to_contain_text("18.00")
    assert balance(stripe_ctx, account) == 0
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
    page.get_by_role("button", name="Pay").click()

    # Back on the billing page; the tokens come when the webhook does, without a reload.
    expect(page).to_have_url(re.compile(r"/panel/billing\?paying=\d+$"))
    page.evaluate("() => { window.__sameDocument = true; }")
    notice = page.get_by_test_id("payment-pending")
    # Stripe's webhook and the page's next question: seconds on a busy machine.
    expect(notice).to_contain_text("Payment received: 10,000 tokens added", timeout=30_000)
    sidebar = page.locator(".tokens-box")
    expect(sidebar.locator('[data-figure="balance"]')).to_have_text("10,000")
    expect(sidebar.locator('[data-figure="balance"]')).to_be_visible()  # "no tokens yet" gone
    assert page.evaluate("() => window.__sameDocument") is True
    assert balance(stripe_ctx, account) == 10_000

    fake.wait_for_deliveries()
    assert all(d.ok for d in fake.deliveries)
    page.reload()
    expect(page.get_by_test_id("saved-card")).to_contain_text("Visa ending in 4242")
    assert [m for m in visit.console if m.startswith(("error", "pageerror"))] == []
    assert_ledger_clean(stripe_ctx)
