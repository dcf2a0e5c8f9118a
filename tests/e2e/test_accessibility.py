"""The panel for everyone: axe-core finds nothing serious on any page, at 1280x800 and
390x844, with a furnished account (an assistant trained on a file, a conversation, an
invoice, an API key); and the keyboard: the skip link, Escape on the phone's menu, the
focus in the "Get more tokens" window; and the phone's top bar: one "Get more tokens",
no taller than what it holds."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from chatmeter.billing import purchases
from chatmeter.billing.models import Invoice
from chatmeter.chat.models import Conversation
from chatmeter.context import Context
from chatmeter.llm.mock import MockProvider
from chatmeter.training import service as training
from tests.e2e.test_panel import account_of, sign_up
from tests.support.axe import serious
from tests.support.browser import Visit
from tests.support.live import LiveServer

# Markup is the same on every database: SQLite is enough.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
EMAIL = "owner@northwind.example"
HOURS = (
    "# Café opening hours\n\n"
    "The café at the roastery is open Monday to Friday from 8:00 to 18:00. On Saturdays it "
    "is open from 9:00 to 13:00, and it is closed on Sundays.\n"
)
# Long, as visitors' opening questions often are: the conversations table must still fit.
QUESTION = (
    "When is the café at the roastery open on Saturdays, and is the café also open on "
    "Sundays, or is it closed all day on Sundays?"
)
ANSWER = "On **Saturdays** the café is open from 9:00 to 13:00."


@dataclass
class Furnished:
    """An account with something on every page."""

    assistant: int
    conversation: int
    invoice: int
    endpoint: int


def furnish(ctx: Context, live: LiveServer, page: Page) -> Furnished:
    """Sign up through the pages, buy tokens, create an assistant, upload a file and have
    a conversation in the test chat, as a customer would (the model is the product's
    instant stand-in, so that the answer does not take minutes)."""
    sign_up(page, live, EMAIL)
    account_id = account_of(ctx, EMAIL)
    purchases.purchase(ctx, account_id=account_id, packages=2, key="a11y:first")
    ctx._providers["local:"] = MockProvider(ANSWER)

    page.goto(f"{live.url}/panel/assistants/new")
    page.get_by_label("Name", exact=True).fill("Northwind Help")
    page.get_by_role("button", name="Create assistant").click()
    expect(page).to_have_url(re.compile(r"/panel/assistants/\d+/training\?done=created$"))
    found = re.search(r"/assistants/(\d+)/", page.url)
    assert found is not None
    assistant = int(found[1])

    # Uploaded through the page; trained here rather than by a worker, to wait on nothing.
    with page.expect_response(lambda r: r.url.endswith("/files") and r.ok) as uploaded:
        page.locator("[data-file-input]").set_input_files(
            [{"name": "cafe-hours.md", "mimeType": "text/markdown", "buffer": HOURS.encode()}]
        )
    assert uploaded.value.status == 201
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    page.reload()
    expect(page.locator("[data-file-row] [data-status]")).to_have_text("Ready")

    page.goto(f"{live.url}/panel/assistants/{assistant}/test")
    question = page.get_by_label("Your question")
    question.fill(QUESTION)
    question.press("Enter")
    expect(page.locator(".msg-bot .bubble").last).to_contain_text("9:00", timeout=60_000)

    with ctx.db.read() as session:
        conversation = session.scalar(
            select(Conversation.id).where(Conversation.assistant_id == assistant)
        )
        invoice = session.scalar(select(Invoice.id).where(Invoice.account_id == account_id))
    assert conversation is not None and invoice is not None

    page.goto(f"{live.url}/panel/settings/api-keys")
    page.get_by_label("Name").fill("Reports")
    page.get_by_role("button", name="Make key").click()
    expect(page.get_by_test_id("new-key")).to_be_visible()

    page.goto(f"{live.url}/panel/settings/webhooks")
    page.get_by_label("URL").fill("https://hooks.northwind.example/chatmeter")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_test_id("new-webhook")).to_be_visible()
    page.get_by_role("link", name="Send a test event and see its delivery").click()
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_test_id("delivery")).to_have_count(1)  # pending: no worker here
    found = re.search(r"/webhooks/(\d+)", page.url)
    assert found is not None
    return Furnished(assistant, conversation, invoice, int(found[1]))


def signed_in_pages(account: Furnished) -> dict[str, str]:
    bot = f"/panel/assistants/{account.assistant}"
    return {
        "dashboard": "/panel/dashboard",
        "assistants": "/panel/assistants",
        "new assistant": "/panel/assistants/new",
        "assistant settings": bot,
        "training": f"{bot}/training",
        "test chat": f"{bot}/test",
        "embed": f"{bot}/embed",
        "conversations": f"{bot}/conversations",
        "conversation": f"{bot}/conversations/{account.conversation}",
        "answers": f"{bot}/answers",
        "new answer": f"{bot}/answers/new",
        "delete assistant": f"{bot}/delete",
        "rotate key": f"{bot}/rotate-key",
        "usage": "/panel/usage",
        "billing": "/panel/billing",
        "receipt": f"/panel/billing/invoices/{account.invoice}",
        "cancel": "/panel/billing/cancel",
        "settings and team": "/panel/settings",
        "api keys": "/panel/settings/api-keys",
        "webhooks": "/panel/settings/webhooks",
        "webhook endpoint": f"/panel/settings/webhooks/{account.endpoint}",
        "contact email, bad link": "/panel/settings/contact-email/confirm?token=not-a-token",
        "page not found": "/panel/assistants/999999",
    }


SIGNED_OUT_PAGES = {
    "sign-in": "/panel/sign-in",
    "sign-up": "/panel/sign-up",
    "forgotten password": "/panel/password/forgot",
    "password reset, bad link": "/panel/password/reset?token=not-a-token",
    "invitation, bad link": "/panel/invite/accept?token=not-a-token",
    "email confirmation, bad link": "/panel/verify-email?token=not-a-token",
}


def checked(page: Page, url: str) -> list[str]:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return serious(page)


def open_tokens_window(page: Page) -> Locator:
    buttons = page.get_by_role("button", name="Get more tokens")
    visible = [b for b in buttons.all() if b.is_visible()]
    visible[0].click()
    window = page.get_by_role("dialog", name="Get more tokens")
    expect(window).to_be_visible()
    return window


def test_every_page_passes_axe_on_a_desktop_and_a_phone(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    account = furnish(ctx, live, page)
    pages = signed_in_pages(account)
    found: dict[str, list[str]] = {}
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        at = f"at {size['width']}px"
        for name, path in pages.items():
            if problems := checked(page, live.url + path):
                found[f"{name} {at}"] = problems
        # Usage with its table of days open (wide: it scrolls, so it must take the focus).
        page.goto(f"{live.url}/panel/usage")
        page.get_by_text("Figures by day").click()
        expect(page.get_by_test_id("days")).to_be_visible()
        if problems := serious(page):
            found[f"usage, days open {at}"] = problems
        # Assistant settings refused: the error summary and the fields in error.
        page.goto(f"{live.url}{pages['assistant settings']}")
        page.locator("#f-name").fill("")
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator("[data-error-summary]")).to_be_visible()
        if problems := serious(page):
            found[f"assistant settings with an error {at}"] = problems
        # The "Get more tokens" window, open and after a purchase.
        page.goto(f"{live.url}/panel/billing")
        window = open_tokens_window(page)
        if problems := serious(page):
            found[f"get more tokens {at}"] = problems
        window.get_by_role("button", name=re.compile("Confirm and pay")).click()
        expect(window.get_by_role("button", name="Done")).to_be_visible()
        if problems := serious(page):
            found[f"get more tokens, bought {at}"] = problems
        if size is PHONE:
            page.goto(f"{live.url}/panel/dashboard")
            page.get_by_role("button", name="Menu").click()
            if problems := serious(page):
                found[f"menu open {at}"] = problems

    page.context.clear_cookies()
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        for name, path in SIGNED_OUT_PAGES.items():
            if problems := checked(page, live.url + path):
                found[f"{name} at {size['width']}px"] = problems
    assert found == {}


# --- the keyboard ---------------------------------------------------------------------


def focused(page: Page) -> str:
    """What has the focus: its tag, id and accessible text, for a readable failure."""
    return str(
        page.evaluate(
            """() => { const e = document.activeElement;
              return `${e.tagName.toLowerCase()}#${e.id} ${(e.textContent || '').trim()}`; }"""
        )
    )


def test_the_skip_link_comes_first_shows_on_focus_and_leads_to_the_content(
    live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, EMAIL)
    page.goto(f"{live.url}/panel/billing")
    skip = page.get_by_role("link", name="Skip to content")
    assert not _on_screen(skip)
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    assert _on_screen(skip)
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    page.keyboard.press("Tab")  # the next stop is inside the content, past the navigation
    assert page.evaluate("() => document.getElementById('main').contains(document.activeElement)")


def _on_screen(locator: Locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["height"] > 1


def test_escape_closes_the_phone_menu_and_gives_the_focus_back(
    live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    page.set_viewport_size(PHONE)
    sign_up(page, live, EMAIL)
    menu = page.get_by_role("button", name="Menu")
    billing = page.get_by_role("link", name="Billing")
    menu.focus()
    page.keyboard.press("Enter")
    expect(billing).to_be_visible()
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    expect(billing).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(menu).to_be_focused()


def test_after_a_purchase_the_focus_is_on_done_and_then_back_on_the_button(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, EMAIL)
    opener = page.locator(".tokens-box").get_by_role("button", name="Get more tokens")
    opener.focus()
    page.keyboard.press("Enter")
    window = page.get_by_role("dialog", name="Get more tokens")
    field = window.get_by_label("How many packages?")
    expect(field).to_be_focused()
    # Tab goes round the window's controls and never leaves it.
    for _ in range(8):
        page.keyboard.press("Tab")
        assert page.evaluate("() => !!document.activeElement.closest('dialog')"), focused(page)
    for _ in range(8):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("() => !!document.activeElement.closest('dialog')"), focused(page)
    field.focus()
    page.keyboard.press("Enter")  # submits: the manual gateway approves at once
    done = window.get_by_role("button", name="Done")
    expect(done).to_be_focused()
    expect(window.get_by_role("status")).to_contain_text("5,000 tokens added")
    page.keyboard.press("Enter")
    expect(window).to_be_hidden()
    expect(opener).to_be_focused()
    assert account_of(ctx, EMAIL)


# --- the phone's top bar ----------------------------------------------------------------


def visible_buy_buttons(page: Page) -> int:
    buttons = page.get_by_role("button", name="Get more tokens").all()
    return sum(1 for button in buttons if button.is_visible())


def test_a_phone_shows_one_get_more_tokens_with_the_menu_open_or_closed(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    page.set_viewport_size(PHONE)
    sign_up(page, live, EMAIL)
    # Tokens to spare: no out-of-tokens banner, whose own button would be a second one.
    purchases.purchase(ctx, account_id=account_of(ctx, EMAIL), packages=2, key="a11y:phone")
    menu = page.get_by_role("button", name="Menu")
    for path in ("/panel/dashboard", "/panel/billing", "/panel/usage"):
        page.goto(f"{live.url}{path}")
        expect(page.get_by_role("alert").filter(has_text="out of tokens")).to_have_count(0)
        assert visible_buy_buttons(page) == 1, path
        menu.click()
        expect(page.get_by_role("link", name="Billing")).to_be_visible()
        assert visible_buy_buttons(page) == 1, path
        assert page.locator(".tokens-box").get_by_role("button").is_visible()
    page.set_viewport_size(DESKTOP)
    page.goto(f"{live.url}/panel/billing")
    assert visible_buy_buttons(page) == 2  # the page's own, and the balance's in the sidebar


def height(page: Page, selector: str) -> float:
    return float(
        page.evaluate(f"() => document.querySelector('{selector}').getBoundingClientRect().height")
    )


def test_the_top_bar_is_as_tall_as_its_content_and_the_sidebar_as_tall_as_the_page(
    live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    page.set_viewport_size(PHONE)
    sign_up(page, live, EMAIL)
    page.goto(f"{live.url}/panel/billing/cancel")  # a short page
    assert page.evaluate("() => document.documentElement.scrollHeight") <= PHONE["height"] + 200
    bar = height(page, ".sidebar")
    content = height(page, ".sidebar-top") + 20  # its padding: 10px above and below
    assert abs(bar - content) < 1, (bar, content)
    assert bar < 80

    page.set_viewport_size({"width": 1280, "height": 500})  # the page is taller than this
    page.goto(f"{live.url}/panel/usage")
    page.get_by_text("Figures by day").click()
    page_height = page.evaluate("() => document.documentElement.scrollHeight")
    assert page_height > 500
    page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    bottom = page.evaluate(
        "() => document.querySelector('.sidebar').getBoundingClientRect().bottom + window.scrollY"
    )
    assert abs(bottom - page_height) < 1, (bottom, page_height)
    # Its contents stay in view while the page scrolls.
    assert page.get_by_role("link", name="Billing").is_visible()
    box = page.get_by_role("link", name="Billing").bounding_box()
    assert box is not None and 0 <= box["y"] < 500


# --- tables -----------------------------------------------------------------------------


def clipped_tables(page: Page) -> list[str]:
    """Tables wider than their box: a column the reader has to find by scrolling."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('.table-wrap')]
                .filter((wrap) => wrap.offsetParent && wrap.scrollWidth > wrap.clientWidth + 1)
                .map((wrap) => wrap.querySelector('table').className)"""
        )
    )


def within_the_width(locator: Locator) -> bool:
    """Whether the element lies within the page's width (not off to the side of a table)."""
    box = locator.bounding_box()
    width = locator.page.viewport_size
    assert box is not None and width is not None
    return box["x"] >= 0 and box["x"] + box["width"] <= width["width"]


def test_tables_fit_and_on_a_phone_every_cell_names_its_column(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    account = furnish(ctx, live, page)
    pages = [
        "/panel/billing",
        "/panel/usage",
        f"/panel/assistants/{account.assistant}/conversations",
        f"/panel/settings/webhooks/{account.endpoint}",
    ]
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        for path in pages:
            page.goto(f"{live.url}{path}")
            if path == "/panel/usage":
                page.get_by_text("Figures by day").click()
            assert clipped_tables(page) == [], (path, size)
    # On the phone each row is a card; each cell shows its column's name before its value.
    page.goto(f"{live.url}/panel/billing")
    assert within_the_width(page.get_by_role("link", name="Receipt"))
    amount = page.locator("td[data-label='Amount']")
    assert amount.evaluate("(cell) => getComputedStyle(cell, '::before').content") == '"Amount"'
    page.goto(f"{live.url}/panel/assistants/{account.assistant}/conversations")
    tokens = page.locator("td[data-label='Tokens']")
    assert within_the_width(tokens)
    assert tokens.evaluate("(cell) => getComputedStyle(cell, '::before').content") == '"Tokens"'
    # The table keeps its semantics: a cell is still a cell of a row.
    assert tokens.get_attribute("role") == "cell"
    assert page.get_by_role("columnheader", name="Tokens").count() == 1
