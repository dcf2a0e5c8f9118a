"""Journey 3, finished in the control panel: a visitor chats through the widget on the
customer's site (another loopback port), and the customer's usage page shows exactly
that conversation's tokens, in the chart, the tables and the CSV; then the page at
phone width, and the screenshot for the docs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing import purchases
from chatmeter.chat.admission import start_turn
from chatmeter.chat.models import Conversation, Message
from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.ledger.models import EntryKind, LedgerEntry
from chatmeter.llm.mock import MockProvider
from tests.chat.shop import Shop
from tests.e2e.driver import ANSWER_TIMEOUT, Widget, load, page_with_widget, train
from tests.e2e.pages import SHOP
from tests.e2e.test_panel import account_of, sign_up
from tests.support.browser import Screenshots, Visit
from tests.support.live import LiveServer
from tests.support.website import Website

DOCUMENTS = {
    "cafe-hours.md": (
        "# Café opening hours\n\n"
        "The café at the roastery is open Monday to Friday from 8:00 to 18:00. On Saturdays "
        "it is open from 9:00 to 13:00, and it is closed on Sundays.\n"
    ),
}
QUESTION = "When is the café open on Saturdays?"
EMAIL = "owner@northwind.example"


@pytest.fixture
def visitor(browser: Browser) -> Iterator[BrowserContext]:
    """A visitor's own browser, apart from the customer's."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context
    context.close()


def new_assistant(ctx: Context, account_id: int, name: str, **fields: object) -> Shop:
    with ctx.db.uow() as uow:
        assistant = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(name=name, **fields),  # type: ignore[arg-type]
            now=ctx.clock.now(),
        )
        uow.commit()
        return Shop(account_id, assistant.id, assistant.public_key, api_key="")


def errors(visit: Visit) -> list[str]:
    return [m for m in visit.console if m.startswith(("error", "pageerror"))]


def number(page: Page, test_id: str) -> int:
    return int(page.get_by_test_id(test_id).inner_text().split()[0].replace(",", ""))


def fits_the_width(page: Page, width: int) -> bool:
    return bool(page.evaluate(f"() => document.documentElement.scrollWidth <= {width}"))


def test_journey_3_the_visitors_conversation_shows_on_the_usage_page(
    ctx: Context, live: LiveServer, website: Website, visit: Visit, visitor: BrowserContext
) -> None:
    # The customer signs up, buys a package and has a trained assistant on their site.
    customer = visit.page
    sign_up(customer, live, EMAIL)
    account_id = account_of(ctx, EMAIL)
    purchases.purchase(ctx, account_id=account_id, packages=1, key="journey-3")
    shop = new_assistant(
        ctx,
        account_id,
        "Help Center",
        allowed_domains=[website.domain],
        widget_title="Northwind Help",
        max_tokens=24,
        passages=2,
    )
    train(ctx, shop, DOCUMENTS)
    url = website.publish("/usage-shop.html", page_with_widget(SHOP, api=live.url, shop=shop))

    # A visitor chats on the customer's site.
    page = visitor.new_page()
    page.set_default_timeout(15_000)
    widget = Widget(page)
    assert load(page, url) == 200
    widget.open()
    widget.ask(QUESTION)
    expect(widget.sources.first).to_be_visible(timeout=ANSWER_TIMEOUT)

    # What was stored and settled for that conversation.
    with ctx.db.read() as session:
        (conversation,) = session.scalars(
            select(Conversation).where(Conversation.account_id == account_id)
        )
        hold_ids = set(
            session.scalars(
                select(Message.hold_id).where(Message.conversation_id == conversation.id)
            )
        ) - {None}
        settled = list(
            session.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.kind == EntryKind.SETTLE, LedgerEntry.hold_id.in_(hold_ids)
                )
            )
        )
    assert len(settled) == 1
    context = settled[0].context_tokens
    response = settled[0].generation_tokens
    assert (conversation.context_tokens, conversation.generation_tokens) == (context, response)
    assert context > 0 and response > 0

    # The customer opens Usage from the navigation.
    customer.get_by_role("link", name="Usage").click()
    expect(customer.get_by_role("heading", name="Usage", level=1)).to_be_visible()
    expect(customer.get_by_test_id("total-tokens")).to_have_text(f"{context + response:,}")
    assert number(customer, "context-tokens") == context
    assert number(customer, "response-tokens") == response
    assert number(customer, "conversations") == 1
    assert number(customer, "messages") == 2
    assert number(customer, "average") == context + response
    row = customer.locator(f'[data-conversation="{conversation.id}"] td')
    expect(row).to_have_text(
        [
            row.nth(0).inner_text(),
            "Help Center",
            "2",
            f"{context:,}",
            f"{response:,}",
            f"{context + response:,}",
        ]
    )

    # The chart is drawn by the vendored Chart.js, with today's bar holding the tokens.
    canvas = customer.locator("#usage-chart")
    expect(canvas).to_have_attribute("data-ready", "true")
    assert customer.evaluate("() => typeof window.Chart") == "function"
    bars = customer.evaluate(
        "() => window.usageChart.data.datasets.map((d) => d.data[d.data.length - 1])"
    )
    assert bars == [context, response]
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 200
    assert errors(visit) == []

    # The same numbers in the CSV download.
    with customer.expect_download() as download:
        customer.get_by_role("link", name="Download CSV").click()
    saved = download.value.path()
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
    today = ctx.clock.now().date().isoformat()
    assert len(rows) == 30 and rows[-1]["date"] == today
    assert (rows[-1]["training_context_tokens"], rows[-1]["response_tokens"]) == (
        str(context),
        str(response),
    )
    assert sum(int(r["total_tokens"]) for r in rows) == context + response
    assert sum(int(r["conversations"]) for r in rows) == 1

    # Choosing a filter applies it at once: the same conversation in the last 7 days.
    customer.get_by_label("Range").select_option("7d")
    expect(customer).to_have_url(f"{live.url}/panel/usage?assistant=&range=7d")
    expect(customer.get_by_test_id("total-tokens")).to_have_text(f"{context + response:,}")
    customer.get_by_label("Assistant").select_option(label="Help Center")
    expect(customer.get_by_test_id("assistant-name")).to_have_text("Help Center")
    expect(customer.get_by_test_id("total-tokens")).to_have_text(f"{context + response:,}")

    # Journey 6: a filter the page does not offer gets a message, not an error page.
    customer.goto(f"{live.url}/panel/usage?range=forever")
    expect(customer.get_by_role("alert")).to_have_text(
        "Choose a range from the list: the last 7, 30 or 90 days, this month or last month."
    )
    visit.console.clear()  # the browser logs the 400 itself

    # At phone width nothing sticks out sideways, and the chart still fits.
    customer.set_viewport_size({"width": 390, "height": 844})
    customer.goto(f"{live.url}/panel/usage")
    expect(canvas).to_have_attribute("data-ready", "true")
    assert fits_the_width(customer, 390)
    for part in ("#usage-chart", ".usage-toolbar", '[data-testid="total-tokens"]'):
        box = customer.locator(part).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, part
    customer.locator("summary", has_text="Figures by day").click()
    assert fits_the_width(customer, 390)
    assert errors(visit) == []


# --- the screenshot -------------------------------------------------------------------------

# A coffee roaster's help desk in its first four weeks, oldest day first (the last is
# today, until noon): quieter weekends, and a newsletter on the Wednesday before last.
VISITS_PER_DAY = [2, 3, 3, 1, 1, 3, 4, 4, 5, 4, 2, 2, 5, 5, 6, 6, 5, 3, 2, 6, 8, 11, 9, 7, 3, 2]


REPLY = (
    "Orders placed before two in the afternoon are roasted and shipped the same day, and "
    "delivery within the UK takes one to two working days. The café is open Monday to "
    "Friday from eight to six and on Saturday mornings. For brewing, start with fifteen "
    "grams of coffee to two hundred and fifty grams of water just off the boil. "
)
QUESTIONS = [
    "Do you ship to Ireland and how long does it take?",
    "Which beans would you recommend for a moka pot at home?",
    "Can I change the grind on my subscription before the next delivery?",
    "Is the café open on Sunday mornings?",
    "What is the minimum order for wholesale accounts and do you offer training?",
]


def words(text: str, count: int) -> str:
    return " ".join((text.split() * (count // len(text.split()) + 1))[:count])


def busy_month(ctx: Context, clock: FixedClock, account_id: int) -> None:
    """Conversations of 2 to 4 turns through the real turn path. The model is the
    product's instant stand-in (a word is a token), so a month of traffic takes seconds;
    its prompts and answers have the lengths of a real help desk's."""
    rng = random.Random(2026)
    ctx._providers["local:"] = MockProvider(
        lambda _request: words(REPLY, rng.randint(60, 170)), context_window=8192
    )
    instructions = words(
        "You are Northwind Coffee's help desk. Answer briefly and kindly from the shop's "
        "own information, and suggest the café or the brewing guides where they help. ",
        300,
    )
    shops = [
        new_assistant(ctx, account_id, name, instructions=instructions, max_tokens=200)
        for name in ("Help Center", "Wholesale orders")
    ]
    end = ctx.clock.now()
    for back, visits in enumerate(reversed(VISITS_PER_DAY)):
        morning = (end - dt.timedelta(days=back)).replace(hour=7, minute=0)
        for n in range(visits):
            shop = shops[0] if rng.random() < 0.7 else shops[1]
            at = min(morning + dt.timedelta(minutes=rng.randint(0, 600)), end)
            conversation = None
            for turn in range(rng.choice((2, 3, 3, 4))):
                clock.set(min(at + dt.timedelta(minutes=2 * turn), end))
                conversation = start_turn(
                    ctx,
                    public_key=shop.public_key,
                    message=rng.choice(QUESTIONS),
                    conversation_id=conversation,
                    visitor=f"visitor-{back}-{n}",
                ).run()["conversation_id"]
    clock.set(end)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_screenshot_of_the_usage_page(
    ctx: Context, clock: FixedClock, live: LiveServer, visit: Visit, screenshots: Screenshots
) -> None:
    page = visit.page
    sign_up(page, live, "hello@northwind.example")
    account_id = account_of(ctx, "hello@northwind.example")
    purchases.purchase(ctx, account_id=account_id, packages=60, key="screenshot:usage")
    busy_month(ctx, clock, account_id)

    page.goto(f"{live.url}/panel/usage?range=30d")
    expect(page.locator("#usage-chart")).to_have_attribute("data-ready", "true")
    page.wait_for_timeout(600)  # the bars' short animation
    assert number(page, "conversations") == sum(VISITS_PER_DAY)
    assert errors(visit) == []
    screenshots.take(page, "usage.png")
