"""A new customer signs up and follows the welcome checklist to a live widget on their own
website, on a desktop and on a phone: every step is ticked from what they really did. On
the way, the settings page's live preview follows the title, the colour and the theme."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from chatmeter.context import Context
from chatmeter.training import service as training
from chatmeter.web.app import create_app
from tests.e2e.driver import ANSWER_TIMEOUT, Widget, load
from tests.e2e.pages import SHOP
from tests.support.axe import serious
from tests.support.browser import Screenshots, Visit
from tests.support.live import LiveServer
from tests.support.website import Website

PASSWORD = "a long enough password"
STEPS = ["assistant", "files", "test", "website", "tokens"]
GUIDE = (
    "# Delivery\n\n"
    "Orders placed before 14:00 are roasted and shipped the same day. Delivery within the "
    "UK takes one to two working days and is free for orders over 30 pounds.\n"
)
QUESTION = "How long does delivery take?"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture
def served(ctx: Context) -> Iterator[LiveServer]:
    """The app, with its snippet naming the address it answers on (as in production)."""
    with LiveServer(create_app(ctx)) as server:
        ctx.settings.base_url = server.url
        yield server


def step(page: Page, key: str) -> Locator:
    return page.locator(f'[data-step-key="{key}"]')


def expect_ticked(page: Page, *done: str) -> None:
    """The dashboard's checklist: exactly ``done`` ticked, the others still to do."""
    for key in STEPS:
        expect(step(page, key)).to_have_attribute("data-done", "yes" if key in done else "no")
    expect(page.get_by_test_id("onboarding-count")).to_have_text(f"{len(done)} of 5 done")


def to_dashboard(page: Page, live: LiveServer) -> None:
    page.goto(f"{live.url}/panel/dashboard")
    expect(page.get_by_role("heading", name="Welcome to Chatmeter")).to_be_visible()


@pytest.mark.parametrize("size", list(SIZES))
def test_a_new_customer_follows_the_checklist_to_a_live_widget(
    ctx: Context,
    served: LiveServer,
    website: Website,
    visit: Visit,
    screenshots: Screenshots,
    size: str,
) -> None:
    page = visit.page
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})

    page.goto(f"{served.url}/panel/sign-up")
    page.get_by_label("Business name").fill("Northwind Coffee")
    page.get_by_label("Email").fill("owner@northwind.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/panel/dashboard$"))

    # Welcomed, not alarmed: nothing is out yet, nothing renews.
    expect(page.get_by_role("heading", name="Welcome to Chatmeter")).to_be_visible()
    expect_ticked(page)
    expect(page.get_by_text("You are out of tokens")).to_have_count(0)
    expect(page.get_by_text("You have not bought any tokens yet.")).to_be_visible()
    expect(page.get_by_test_id("renews")).to_be_hidden()
    # What this page adds reads for everyone (the panel's own colours are checked elsewhere).
    for part in ('[data-testid="onboarding"]', '[data-testid="no-tokens"]'):
        assert serious(page, context=part) == [], part

    # 1. Create an assistant, from the checklist.
    step(page, "assistant").get_by_role("link", name="New assistant").click()
    page.get_by_label("Name", exact=True).fill("Northwind Help")
    page.get_by_role("button", name="Create assistant").click()
    expect(page).to_have_url(re.compile(r"/panel/assistants/\d+/training\?done=created$"))
    to_dashboard(page, served)
    expect_ticked(page, "assistant")

    # 2. Add files: ticked once one is ready.
    step(page, "files").get_by_role("link", name="Add files").click()
    page.locator("[data-file-input]").set_input_files(
        [{"name": "delivery.md", "mimeType": "text/markdown", "buffer": GUIDE.encode()}]
    )
    row = page.locator("[data-file-row]").filter(has_text="delivery.md")
    expect(row.locator("[data-status]")).to_have_text(re.compile("Queued|Training"))
    to_dashboard(page, served)
    expect_ticked(page, "assistant")  # uploaded, not ready: not yet
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    page.reload()
    expect_ticked(page, "assistant", "files")

    # 3. Try it in the test chat; it needs tokens, and says so, which ticks step 5 too.
    step(page, "test").get_by_role("link", name="Open the test chat").click()
    chat = page.get_by_label("Your question")
    chat.fill(QUESTION)
    chat.press("Enter")
    out = page.get_by_role("alert").filter(has_text="Your account has no tokens yet")
    out.get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    window.get_by_role("button", name=re.compile("Confirm and pay")).click()
    expect(window.get_by_role("status")).to_contain_text("5,000 tokens added")
    window.get_by_role("button", name="Done").click()
    replies = page.locator("[data-chat-log] .msg-bot")
    before = replies.count()
    page.get_by_role("button", name="Send").click()
    expect(replies).to_have_count(before + 1, timeout=ANSWER_TIMEOUT)
    expect(page.locator("[data-chat-log] .is-streaming")).to_have_count(0, timeout=ANSWER_TIMEOUT)
    to_dashboard(page, served)
    expect_ticked(page, "assistant", "files", "test", "tokens")
    expect(page.get_by_test_id("balance")).to_be_visible()
    screenshots.take(page, f"onboarding-{size}.png")
    assert serious(page, context='[data-testid="onboarding"]') == []

    # 4. Allow the website, then copy the snippet from the Embed tab.
    step(page, "website").get_by_role("link", name="Embed").click()
    expect(page.get_by_test_id("host-warning")).to_have_count(0)  # the snippet is this host's
    assert serious(page, context=".embed-preview") == []
    page.get_by_role("link", name="Change the allowed websites").click()
    page.get_by_label("Domains").fill(website.domain)
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Your changes are saved.")
    page.locator(".tabs").get_by_role("link", name="Embed").click()
    snippet = page.get_by_test_id("snippet").inner_text()
    assert snippet.startswith(f'<script src="{served.url}/widget.js" data-assistant="pk_')

    # The blank page opens in a new tab, with the widget on Chatmeter's own address.
    with page.context.expect_page() as opened:
        page.get_by_role("link", name=re.compile("Test on a blank page")).click()
    blank = opened.value
    expect(blank.locator("chatmeter-widget .launcher")).to_be_visible()
    blank.close()

    page.goto(f"{served.url}/panel/dashboard")
    expect(page.get_by_role("heading", name="You're live")).to_be_visible()
    assert serious(page, context='[data-testid="onboarding"]') == []
    for key in STEPS:
        expect(step(page, key)).to_have_attribute("data-done", "yes")

    # The customer's page, with the pasted snippet: a visitor gets answers.
    url = website.publish(f"/onboarding-{size}.html", SHOP.replace("{embed}", snippet))
    shop = visit.page.context.new_page()
    assert load(shop, url) == 200
    widget = Widget(shop)
    widget.open()
    answers = widget.answers.count()
    widget.ask(QUESTION)
    expect(widget.answers).to_have_count(answers + 1, timeout=ANSWER_TIMEOUT)
    expect(widget.last_answer()).to_contain_text(re.compile("day", re.I), timeout=ANSWER_TIMEOUT)
    shop.close()

    # "You're live" closes for good.
    page.reload()
    page.get_by_role("button", name="Close").click()
    expect(page.get_by_test_id("onboarding")).to_have_count(0)
    page.reload()
    expect(page.get_by_test_id("onboarding")).to_have_count(0)
    assert [m for m in visit.console if m.startswith("pageerror")] == []


def test_the_settings_preview_follows_the_title_colour_and_theme(
    ctx: Context, served: LiveServer, visit: Visit, screenshots: Screenshots
) -> None:
    page = visit.page
    page.goto(f"{served.url}/panel/sign-up")
    page.get_by_label("Business name").fill("Northwind Coffee")
    page.get_by_label("Email").fill("preview@northwind.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.goto(f"{served.url}/panel/assistants/new")
    page.get_by_label("Name", exact=True).fill("Northwind Help")
    page.get_by_role("button", name="Create assistant").click()
    # Typing starts once the Settings page has loaded, its preview script with it.
    with page.expect_navigation(wait_until="load"):
        page.locator(".tabs").get_by_role("link", name="Settings").click()

    preview = page.get_by_test_id("preview")
    drawing = preview.locator("[data-preview]")
    head = preview.locator(".wp-head")
    window = preview.locator(".wp-window")
    expect(preview.locator("[data-preview-title]")).to_have_text("Northwind Help")

    page.get_by_label("Title", exact=True).fill("<b>Ask Northwind</b>")
    expect(preview.locator("[data-preview-title]")).to_have_text("<b>Ask Northwind</b>")
    expect(preview.locator("b")).to_have_count(0)  # text, never markup
    page.get_by_label("Subtitle").fill("Beans, brewing and delivery")
    expect(preview.locator("[data-preview-subtitle]")).to_have_text("Beans, brewing and delivery")
    page.get_by_label("Subtitle").fill("")
    expect(preview.locator("[data-preview-subtitle]")).to_have_text("Ask us anything")
    page.get_by_label("Message box").fill("Your question…")
    expect(preview.locator("[data-preview-placeholder]")).to_have_text("Your question…")

    # The colour: the header follows it, its text chosen by contrast.
    colour = page.locator("#f-widget_color")
    colour.fill("#facc15")  # yellow: dark text
    expect(head).to_have_css("background-color", "rgb(250, 204, 21)")
    expect(head).to_have_css("color", "rgb(0, 0, 0)")
    assert serious(page, context='[data-testid="preview"]') == []
    colour.fill("#1e3a8a")  # navy: white text
    expect(head).to_have_css("background-color", "rgb(30, 58, 138)")
    expect(head).to_have_css("color", "rgb(255, 255, 255)")
    colour.fill("#1e3a8")  # not a colour yet: the last good one stays
    expect(head).to_have_css("background-color", "rgb(30, 58, 138)")

    # The theme: light, dark, and automatic (this browser prefers light).
    page.get_by_text("Dark", exact=True).click()
    expect(drawing).to_have_attribute("data-theme", "dark")
    expect(window).to_have_css("background-color", "rgb(17, 24, 39)")
    assert serious(page, context='[data-testid="preview"]') == []
    page.get_by_text("Light", exact=True).click()
    expect(window).to_have_css("background-color", "rgb(255, 255, 255)")
    page.get_by_text("Automatic", exact=True).click()
    expect(drawing).to_have_attribute("data-theme", "auto")
    page.emulate_media(color_scheme="dark")
    expect(window).to_have_css("background-color", "rgb(17, 24, 39)")
    page.emulate_media(color_scheme="light")

    # Saved through the ordinary form, and drawn so on the next visit.
    colour.fill("#1e3a8a")
    page.get_by_text("Dark", exact=True).click()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Your changes are saved.")
    expect(drawing).to_have_attribute("data-theme", "dark")
    expect(preview.locator("[data-preview-title]")).to_have_text("<b>Ask Northwind</b>")
    expect(head).to_have_css("color", "rgb(255, 255, 255)")
    screenshots.take(page, "settings-preview.png")
    assert [m for m in visit.console if m.startswith(("error", "pageerror"))] == []
