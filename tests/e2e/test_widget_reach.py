"""A widget for every visitor: in their language, in their light or dark preference, with
the customer's own words, usable by keyboard alone, modal on a phone, and passing axe on
any brand colour."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from chatmeter.context import Context
from chatmeter.widget import texts
from tests.chat.shop import Shop, open_shop
from tests.e2e.driver import ANSWER_TIMEOUT, HOST, Widget, load, page_with_widget, train
from tests.e2e.pages import SHOP
from tests.support.axe import serious
from tests.support.browser import Screenshots
from tests.support.live import LiveServer
from tests.support.website import Website, embed

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

FRENCH = texts.TRANSLATIONS["fr"]
YELLOW = "#facc15"
# Computed colours of the two palettes (widget.js LIGHT and DARK).
LIGHT_SURFACE, DARK_SURFACE = "rgb(255, 255, 255)", "rgb(30, 41, 59)"
LIGHT_CANVAS, DARK_CANVAS = "rgb(248, 250, 252)", "rgb(15, 23, 42)"
LIGHT_TEXT, DARK_TEXT = "rgb(17, 24, 39)", "rgb(241, 245, 249)"

# A conversation from an earlier visit, as the widget keeps it: an answer in Markdown
# with a link and code, its sources, a vote, and the marker of an answer cut short.
EARLIER = [
    {"role": "user", "text": "Do you ship abroad?"},
    {
        "role": "assistant",
        "text": "**Yes.** We ship to:\n\n- the UK\n- the EU\n\nSee [delivery](https://example.com/"
        "delivery) or use the code `ABROAD`. Orders over",
        "sources": [{"name": "Delivery · Abroad", "passage": "We ship to the UK and the EU."}],
        "messageId": 7,
        "conversation": "c_earlier",
        "rating": None,
        "cutOff": True,
    },
]

# A page with things to reach by Tab and enough height to scroll, one element the page
# made inert itself, and its own inline overflow style: closing must give both back.
LONG_PAGE = """<!doctype html>
<html lang="en" style="scroll-behavior: auto">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Long page</title></head>
<body style="margin: 0; overflow-x: clip">
<nav><a href="#one">One</a> <a href="#two">Two</a> <button type="button">Menu</button></nav>
<div id="already" inert><a href="#three">Three</a></div>
<main style="height: 4000px"><h1>Northwind</h1><input aria-label="Search"></main>
{embed}
</body>
</html>
"""


CAFE = (
    "# Café opening hours\n\n"
    "The café at the roastery is open Monday to Friday from 8:00 to 18:00. On Saturdays "
    "it is open from 9:00 to 13:00, and it is closed on Sundays.\n"
)


def shop_for(ctx: Context, website: Website, **fields: Any) -> Shop:
    return open_shop(ctx, train=False, allowed_domains=[website.domain], **fields)


def remember(context: BrowserContext, shop: Shop, messages: list[dict[str, Any]]) -> None:
    """Give the visitor an earlier conversation in the widget's storage."""
    saved = json.dumps({"conversationId": "c_earlier", "messages": messages, "open": False})
    context.add_init_script(
        f"localStorage.setItem({json.dumps('chatmeter:' + shop.public_key)}, {json.dumps(saved)})"
    )


@pytest.fixture
def french_dark(browser: Browser) -> Iterator[Page]:
    """A French visitor whose system is in dark mode."""
    context = browser.new_context(
        locale="fr-FR", color_scheme="dark", viewport={"width": 1280, "height": 800}
    )
    yield context.new_page()
    context.close()


def test_a_french_visitor_in_dark_mode_gets_a_french_dark_widget(
    ctx: Context, live: LiveServer, website: Website, french_dark: Page, screenshots: Screenshots
) -> None:
    shop = shop_for(ctx, website, widget_title="Northwind", welcome_message="Bonjour !")
    remember(french_dark.context, shop, EARLIER)
    url = website.publish("/fr.html", page_with_widget(SHOP, api=live.url, shop=shop))
    widget = Widget(french_dark)

    assert load(french_dark, url) == 200
    expect(widget.launcher).to_have_accessible_name(f"{FRENCH['open']}: Northwind")
    widget.open()

    frame = french_dark.locator(f"{HOST} .cm")
    expect(frame).to_have_attribute("lang", "fr")
    expect(french_dark.locator(f"{HOST} .subtitle")).to_have_text(FRENCH["subtitle"])
    expect(widget.input).to_have_attribute("placeholder", FRENCH["placeholder"])
    expect(widget.input).to_have_accessible_name(FRENCH["placeholder"])
    expect(widget.send).to_have_accessible_name(FRENCH["send"])
    expect(french_dark.get_by_role("button", name=FRENCH["close"]).first).to_be_visible()
    expect(french_dark.get_by_role("log")).to_have_accessible_name(FRENCH["conversation"])
    expect(widget.cut_off).to_have_text(FRENCH["cut_off"])
    expect(french_dark.get_by_role("group", name=FRENCH["rate_question"])).to_be_visible()
    expect(french_dark.get_by_role("button", name=FRENCH["helpful"], exact=True)).to_be_visible()
    expect(french_dark.locator(f"{HOST} .foot")).to_have_text(FRENCH["powered_by"])
    assert not set(widget.shadow_text().split()) & {"Ask", "anything", "Powered", "cut"}

    assert widget.style(".panel", ["background-color"])["background-color"] == DARK_SURFACE
    assert widget.style(".log", ["background-color"])["background-color"] == DARK_CANVAS
    assert widget.style(".bot .bubble", ["color"])["color"] == DARK_TEXT
    assert widget.style(".input", ["color"])["color"] == DARK_TEXT
    screenshots.take(french_dark, "widget-french-dark.png")


def test_the_customers_own_words_show_instead_of_the_translation(
    ctx: Context, live: LiveServer, website: Website, french_dark: Page
) -> None:
    shop = shop_for(
        ctx,
        website,
        widget_texts={"subtitle": "Réponse en une minute", "placeholder": "Votre question…"},
        widget_theme="light",  # fixed: the visitor's dark preference does not change it
    )
    url = website.publish("/own-words.html", page_with_widget(SHOP, api=live.url, shop=shop))
    widget = Widget(french_dark)

    load(french_dark, url)
    widget.open()

    expect(french_dark.locator(f"{HOST} .subtitle")).to_have_text("Réponse en une minute")
    expect(widget.input).to_have_attribute("placeholder", "Votre question…")
    expect(widget.send).to_have_accessible_name(FRENCH["send"])  # not overridden: French
    assert widget.style(".panel", ["background-color"])["background-color"] == LIGHT_SURFACE
    assert widget.style(".log", ["background-color"])["background-color"] == LIGHT_CANVAS
    assert widget.style(".input", ["color"])["color"] == LIGHT_TEXT


def test_auto_follows_the_pages_own_scheme_when_it_declares_one(
    ctx: Context, live: LiveServer, website: Website, browser: Browser
) -> None:
    """A page that declares only dark gets a dark widget for a visitor who prefers light;
    when the page switches itself to light, the widget follows at once."""
    shop = shop_for(ctx, website)  # widget_theme "auto"
    dark_page = SHOP.replace(
        '<meta charset="utf-8">',
        '<meta charset="utf-8">\n<meta name="color-scheme" content="dark">',
    )
    url = website.publish("/dark-site.html", page_with_widget(dark_page, api=live.url, shop=shop))
    context = browser.new_context(color_scheme="light", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    widget = Widget(page)
    try:
        load(page, url)
        widget.open()
        assert widget.style(".panel", ["background-color"])["background-color"] == DARK_SURFACE

        page.evaluate("document.documentElement.style.colorScheme = 'light'")
        expect(page.locator(f"{HOST} .cm")).to_have_class(re.compile(r"\blight\b"))
        assert widget.style(".panel", ["background-color"])["background-color"] == LIGHT_SURFACE
    finally:
        context.close()


def test_a_keyboard_alone_opens_asks_reads_and_closes(
    ctx: Context, live: LiveServer, website: Website, browser: Browser
) -> None:
    # The smallest response cap: the answer is cut, and says so.
    shop = shop_for(ctx, website, widget_title="Northwind Help", max_tokens=16)
    train(ctx, shop, {"cafe.md": CAFE})
    url = website.publish("/keys.html", page_with_widget(SHOP, api=live.url, shop=shop))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    widget = Widget(page)
    try:
        load(page, url)
        page.keyboard.press("Tab")  # the shop page has nothing else to reach
        expect(widget.launcher).to_be_focused()
        page.keyboard.press("Enter")
        expect(widget.panel).to_be_visible()
        expect(widget.input).to_be_focused()

        page.keyboard.type("When is the café open?")
        page.keyboard.press("Enter")
        expect(widget.cut_off).to_have_text(texts.ENGLISH["cut_off"], timeout=ANSWER_TIMEOUT)
        expect(page.locator(f"{HOST} .bubble.md")).to_have_count(1)  # the answer, in Markdown
        expect(widget.input).to_be_focused()
        (_, stored) = widget.history(shop.public_key)
        assert stored["cutOff"] is True

        page.keyboard.press("Escape")
        expect(widget.panel).to_be_hidden()
        expect(widget.launcher).to_be_focused()

        # The marker is part of the conversation kept for the next page load.
        page.reload()
        widget.open()
        expect(widget.cut_off).to_have_count(1)
    finally:
        context.close()


def settled(page: Page) -> None:
    """Wait until the panel's opening animation has ended (axe reads colours mid-fade)."""
    page.wait_for_function(
        f"""() => document.querySelector('{HOST}').shadowRoot.querySelector('.panel')
            .getAnimations({{subtree: true}})
            .every((a) => a.effect.getComputedTiming().iterations === Infinity)"""
    )


def active_in_widget(page: Page) -> str:
    """The class of the focused element inside the widget, or "page" if focus is outside."""
    return str(
        page.evaluate(
            f"""() => document.activeElement === document.querySelector('{HOST}')
                ? document.querySelector('{HOST}').shadowRoot.activeElement.className || "?"
                : "page" """
        )
    )


def page_state(page: Page) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => ({
              html: document.documentElement.style.cssText,
              body: document.body.style.cssText,
              inert: [...document.body.children]
                .filter((e) => e.inert).map((e) => e.id || e.tagName),
            })"""
        )
    )


def test_on_a_phone_the_open_widget_is_modal(
    ctx: Context, live: LiveServer, website: Website, browser: Browser
) -> None:
    shop = shop_for(ctx, website, welcome_message="Hello!")
    url = website.publish(
        "/long.html", LONG_PAGE.replace("{embed}", embed(live.url, shop.public_key))
    )
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    widget = Widget(page)
    try:
        load(page, url)
        before = page_state(page)
        assert before["inert"] == ["already"]

        widget.open()
        expect(widget.panel).to_have_attribute("aria-modal", "true")
        expect(widget.input).to_be_focused()
        during = page_state(page)
        assert set(during["inert"]) == {"NAV", "already", "MAIN", "SCRIPT"}  # all but the widget
        assert (
            widget.page.evaluate("() => getComputedStyle(document.documentElement).overflow")
            == "hidden"
        )

        # Tab and Shift+Tab go round the panel: restart, close, log, input (send is off).
        seen = []
        for _ in range(8):
            page.keyboard.press("Tab")
            seen.append(active_in_widget(page))
        assert "page" not in seen
        assert seen[:4] == ["tool", "tool", "log", "input"] and seen[4:] == seen[:4], seen
        backwards = []
        for _ in range(5):
            page.keyboard.press("Shift+Tab")
            backwards.append(active_in_widget(page))
        assert backwards == ["log", "tool", "tool", "input", "log"], backwards

        # The page behind does not scroll.
        page.mouse.wheel(0, 800)
        page.evaluate(
            "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        assert page.evaluate("() => window.scrollY") == 0

        page.keyboard.press("Escape")
        expect(widget.panel).to_be_hidden()
        expect(widget.launcher).to_be_focused()
        assert page_state(page) == before  # exactly as the page had it

        # ... and now it does scroll, and the keyboard reaches the page again.
        page.mouse.wheel(0, 800)
        page.wait_for_function("() => window.scrollY > 0")
        page.keyboard.press("Shift+Tab")
        expect(page.get_by_label("Search")).to_be_focused()
    finally:
        context.close()


def test_on_a_desktop_the_open_widget_leaves_the_page_alone(
    ctx: Context, live: LiveServer, website: Website, browser: Browser
) -> None:
    shop = shop_for(ctx, website)
    url = website.publish(
        "/long-desk.html", LONG_PAGE.replace("{embed}", embed(live.url, shop.public_key))
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    widget = Widget(page)
    try:
        load(page, url)
        before = page_state(page)
        widget.open()
        expect(widget.panel).to_have_attribute("aria-modal", "false")
        assert page_state(page) == before
        # Shift+Tab from the first control leaves the panel for the page.
        widget.page.locator(f"{HOST} .tool").first.focus()
        page.keyboard.press("Shift+Tab")
        expect(page.get_by_label("Search")).to_be_focused()
    finally:
        context.close()


@pytest.mark.parametrize(
    ("color", "theme", "scheme"),
    [
        (YELLOW, "auto", "light"),
        (YELLOW, "auto", "dark"),
        ("#ffffff", "light", "dark"),
        ("#777777", "dark", "light"),
    ],
)
def test_axe_finds_nothing_serious_closed_or_open_on_any_brand_colour(
    ctx: Context,
    live: LiveServer,
    website: Website,
    browser: Browser,
    color: str,
    theme: str,
    scheme: str,
) -> None:
    shop = shop_for(
        ctx, website, widget_color=color, widget_theme=theme, welcome_message="Hi! Ask away."
    )
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 800})
    remember(context, shop, EARLIER)
    page = context.new_page()
    widget = Widget(page)
    url = website.publish(
        f"/axe-{color[1:]}-{scheme}.html", page_with_widget(SHOP, api=live.url, shop=shop)
    )
    try:
        load(page, url)
        assert serious(page) == []
        widget.open()
        expect(widget.cut_off).to_be_visible()
        settled(page)
        # Every text on the brand colour keeps 4.5:1: title, subtitle and the question.
        assert serious(page) == []
        dark = theme == "dark" or (theme == "auto" and scheme == "dark")
        surface = DARK_SURFACE if dark else LIGHT_SURFACE
        assert widget.style(".panel", ["background-color"])["background-color"] == surface
    finally:
        context.close()
