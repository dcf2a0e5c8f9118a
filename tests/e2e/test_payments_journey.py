"""Paying by card through Stripe, in the browser: a new customer opens "Get more tokens",
chooses 2 packages, pays on Stripe's (fake) hosted page, comes back to the billing page,
and sees 10,000 more tokens arrive without a reload once Stripe's webhook, delivered over
loopback by the fake, confirms the payment. Later the owner turns on auto top-up, and a
chat crossing the threshold buys once more with the saved card, off-session."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from chatmeter.jobs.worker import Worker
from chatmeter.llm.mock import MockProvider
from chatmeter.web.app import create_app
from tests.chat.shop import Shop
from tests.e2e.driver import ANSWER_TIMEOUT, train
from tests.e2e.test_auto_topup_journey import ANSWER, DOCUMENTS
from tests.e2e.test_panel import account_of, balance, sign_up
from tests.support.browser import Visit
from tests.support.fake_stripe import FakeStripe
from tests.support.ledger import assert_ledger_clean
from tests.support.live import LiveServer
from tests.support.payments import with_stripe

EMAIL = "owner@northwind.example"


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

    # Later: auto top-up of 1 package below 9,990 tokens, fired by one test chat.
    bot = assistant_with_files(stripe_ctx, account)
    fired = threading.Event()
    worker = Worker(
        stripe_ctx,
        names=["auto-top-up"],
        on_job=lambda e: e.phase == "finished" and (e.result or {}).get("started") and fired.set(),
    )
    stripe_ctx.db.wake_worker = worker.wake
    worker.start()
    visit.closing.append(worker.stop)
    section = page.get_by_test_id("auto-top-up")
    section.get_by_label("Turn on auto top-up").check()
    section.get_by_label("When the balance falls below (tokens)").fill("9,990")
    section.get_by_label(re.compile("Buy this many packages")).fill("1")
    section.get_by_label(re.compile("At most this many times a month")).fill("2")
    section.get_by_role("button", name="Save auto top-up").click()
    expect(page.get_by_role("status")).to_have_text("Auto top-up is saved.")

    page.goto(f"{live.url}/panel/assistants/{bot}/test")
    page.get_by_label("Your question").fill("When are you open on Saturdays?")
    page.get_by_role("button", name="Send", exact=True).click()
    answer = page.locator("[data-chat-log] .msg-bot .bubble").last
    expect(answer).to_contain_text("13:00", timeout=ANSWER_TIMEOUT)
    assert fired.wait(timeout=30), "auto top-up did not fire"

    page.goto(f"{live.url}/panel/dashboard")
    expect(page.get_by_test_id("auto-top-up-line")).to_contain_text("1 of 2 this month")
    intents = fake.payment_intents_created()
    assert [(i["amount"], i["status"]) for i in intents[1:]] == [(900, "succeeded")]
    charges = [r[2] for r in fake.requests if r[:2] == ("POST", "/v1/payment_intents")]
    assert [c["off_session"] for c in charges] == ["true"]  # the saved card, no customer
    assert 10_000 < balance(stripe_ctx, account) < 15_000
    assert [m for m in visit.console if m.startswith(("error", "pageerror"))] == []
    assert_ledger_clean(stripe_ctx)


def assistant_with_files(ctx: Context, account: int) -> int:
    """A trained assistant answering from a model that replies at once."""
    with ctx.db.uow() as uow:
        bot = assistants.create_assistant(
            uow.session,
            account_id=account,
            fields=AssistantFields(name="Help Center", max_tokens=40, answer_mode="generated"),
            now=ctx.clock.now(),
        )
        uow.commit()
    train(ctx, Shop(account, bot.id, bot.public_key, api_key=""), DOCUMENTS)
    ctx._providers["local:"] = MockProvider(ANSWER, context_window=8192)
    return bot.id
