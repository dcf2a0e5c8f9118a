"""The widget and its host page leave each other alone: styles stay on their side of the
shadow root, answers are text whatever they contain, and a keyboard is all it takes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from chatmeter.context import Context
from tests.chat.shop import Shop, open_shop
from tests.e2e.driver import HOST, Widget, load, page_with_widget
from tests.e2e.pages import HOSTILE, PLAIN
from tests.support.browser import Visit
from tests.support.live import LiveServer
from tests.support.website import Website

# None of these journeys asks the model; one database is enough.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

BARE = '<!doctype html><html lang="en"><head><link rel="icon" href="data:,"></head><body>{embed}'
PROPERTIES = [
    "display",
    "position",
    "box-sizing",
    "color",
    "background-color",
    "font-family",
    "font-size",
    "line-height",
    "letter-spacing",
    "padding-top",
    "padding-left",
    "margin-top",
    "border-top-width",
    "border-top-style",
    "border-top-left-radius",
    "width",
    "height",
    "transform",
    "box-shadow",
    "opacity",
]
PARTS = [".launcher", ".panel", ".head", ".title", ".log", ".bubble", ".input", ".send", ".foot"]
MARKUP = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>'


@pytest.fixture
def shop(ctx: Context, website: Website) -> Shop:
    return open_shop(
        ctx,
        train=False,
        allowed_domains=[website.domain],
        widget_title="Help",
        welcome_message="Hello!",
    )


def widget_looks(page: Page) -> dict[str, Any]:
    widget = Widget(page)
    page.mouse.move(0, 0)  # no hover effects
    page.evaluate(
        f"""() => Promise.all(document.querySelector('{HOST}').shadowRoot
                  .getAnimations().map((a) => a.finished))"""
    )
    return {part: widget.style(part, PROPERTIES) for part in PARTS} | {
        "launcher box": widget.launcher.bounding_box(),
        "panel box": widget.panel.bounding_box(),
    }


def page_looks(page: Page) -> list[Any]:
    """The computed style of every element of the host page (not the widget's)."""
    return list(
        page.evaluate(
            """(properties) => [document.documentElement, document.body,
                 ...document.body.querySelectorAll(':not(chatmeter-widget):not(script)')]
              .map((node) => [node.tagName, node.className,
                 properties.map((p) => getComputedStyle(node).getPropertyValue(p))])""",
            PROPERTIES,
        )
    )


def test_the_host_pages_css_does_not_reach_the_widget(
    live: LiveServer, website: Website, visit: Visit, shop: Shop
) -> None:
    page = visit.page
    widget = Widget(page)
    looks = {}
    for name, template in {"bare": BARE, "hostile": HOSTILE}.items():
        url = website.publish(f"/{name}.html", page_with_widget(template, api=live.url, shop=shop))
        assert load(page, url) == 200
        widget.open()
        looks[name] = widget_looks(page)
        page.keyboard.press("Escape")  # so that the next page starts the same way

    assert looks["hostile"] == looks["bare"]
    assert looks["bare"][".title"]["font-size"] == "16px"
    assert looks["bare"][".launcher"]["color"] == "rgb(255, 255, 255)"
    assert looks["bare"][".launcher"]["background-color"] == "rgb(37, 99, 235)"  # the colour


def test_the_widgets_css_does_not_reach_the_host_page(
    live: LiveServer, website: Website, visit: Visit, shop: Shop
) -> None:
    """Elements of the page that share the widget's class names look the same with it."""
    page = visit.page
    without = website.publish("/plain.html", PLAIN.replace("{embed}", ""))
    with_widget = website.publish(
        "/plain-widget.html", page_with_widget(PLAIN, api=live.url, shop=shop)
    )
    page.goto(without)
    before = page_looks(page)

    assert load(page, with_widget) == 200
    Widget(page).open()

    assert page_looks(page) == before


def sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events)


def test_an_answer_full_of_markup_is_shown_as_text(
    live: LiveServer, website: Website, visit: Visit, shop: Shop
) -> None:
    """The chat answer comes from the network here (intercepted, not a model): every
    character of HTML in it and in its sources appears as typed, and nothing runs."""
    source = {"title": f"{MARKUP}.txt", "heading": "<i>h</i>", "page": None, "passage": MARKUP}

    def answer(route: Route) -> None:
        route.fulfill(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Access-Control-Allow-Origin": website.origin,
            },
            body=sse(
                ("start", {"conversation_id": "cv_test"}),
                ("delta", {"text": "Look: "}),
                ("delta", {"text": MARKUP}),
                ("done", {"conversation_id": "cv_test", "sources": [source]}),
            ),
        )

    page = visit.page
    widget = Widget(page)
    page.route(f"{live.url}/api/v1/public/*/chat", answer)
    url = website.publish("/markup.html", page_with_widget(BARE, api=live.url, shop=shop))
    load(page, url)
    widget.open()
    widget.ask("Show me markup")

    expect(widget.last_answer()).to_have_text(f"Look: {MARKUP}")
    expect(widget.sources.first).to_have_text(f"{MARKUP}.txt · <i>h</i>")
    for _ in range(2):
        assert page.evaluate("() => window.__pwned") is None
        assert widget.count("img, script, b, i") == 0
        page.reload()  # and as kept for the next page load
        expect(widget.last_answer()).to_have_text(f"Look: {MARKUP}")


def test_the_widget_works_from_the_keyboard(
    live: LiveServer, website: Website, visit: Visit, shop: Shop
) -> None:
    asked: list[dict[str, Any]] = []

    def answer(route: Route) -> None:
        asked.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(
            status=503,
            headers={"Access-Control-Allow-Origin": website.origin},
            json={"error": {"code": "unavailable", "message": "..."}},
        )

    page = visit.page
    widget = Widget(page)
    page.route(f"{live.url}/api/v1/public/*/chat", answer)
    url = website.publish("/keys.html", page_with_widget(BARE, api=live.url, shop=shop))
    load(page, url)

    page.keyboard.press("Tab")
    expect(widget.launcher).to_be_focused()
    expect(widget.launcher).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect(widget.panel).to_be_visible()
    expect(widget.launcher).to_have_attribute("aria-expanded", "true")
    expect(widget.input).to_be_focused()
    expect(page.get_by_role("log", name="Conversation")).to_have_attribute("aria-live", "off")
    expect(page.locator(f"{HOST} .sr-only")).to_have_attribute("aria-live", "polite")

    page.keyboard.type("Hello")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("there")
    page.keyboard.press("Enter")
    expect(widget.notices.last).to_have_text("This assistant is not available right now.")
    assert asked == [{"message": "Hello\nthere", "conversation_id": None}]
    expect(page.locator(f"{HOST} .sr-only")).to_have_text(
        "This assistant is not available right now."
    )

    page.keyboard.press("Escape")
    expect(widget.panel).to_be_hidden()
    expect(widget.launcher).to_be_focused()
