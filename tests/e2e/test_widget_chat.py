"""Journey 3: a visitor chats with the widget on a customer's site, the answer streams in
with its source, the customer sees the conversation's tokens, and the conversation is
still there after the page reloads; on a phone the panel fills the screen."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from chatmeter.context import Context
from tests.chat.shop import open_shop
from tests.e2e.driver import ANSWER_TIMEOUT, Widget, load, page_with_widget, train
from tests.e2e.pages import SHOP
from tests.support.browser import Screenshots, Visit
from tests.support.live import LiveServer
from tests.support.website import Website

# A coffee roaster's help files, for a conversation that looks like the product's.
DOCUMENTS = {
    "cafe-hours.md": (
        "# Café opening hours\n\n"
        "The café at the roastery is open Monday to Friday from 8:00 to 18:00. On Saturdays "
        "it is open from 9:00 to 13:00, and it is closed on Sundays.\n"
    ),
    "delivery.md": (
        "# Delivery\n\n"
        "Orders placed before 14:00 are roasted and shipped the same day. Delivery within "
        "the UK takes one to two working days and is free for orders over 30 pounds.\n"
    ),
}
QUESTION = "When is the café open on Saturdays?"
FOLLOW_UP = "How long does delivery take?"
MARKUP_FILE = "<img src=x onerror=window.__pwned=1>hours.txt"


def unmarked(text: str) -> str:
    """Text without Markdown's emphasis and code marks."""
    return re.sub(r"[*_`]", "", text)


MARKUP_TEXT = (
    "Opening hours <script>window.__pwned=2</script> The café is open Monday to Friday "
    "from 8:00 to 18:00 <img src=x onerror=window.__pwned=3> and on Saturdays from 9:00 "
    "to 13:00.\n"
)


def test_a_visitor_chats_and_the_customer_sees_the_conversation(
    ctx: Context, live: LiveServer, website: Website, visit: Visit, screenshots: Screenshots
) -> None:
    shop = open_shop(
        ctx,
        train=False,
        allowed_domains=[website.domain],
        widget_title="Northwind Help",
        widget_color="#0f766e",
        welcome_message="Hi! Ask me about our café, delivery or brewing.",
        max_tokens=80,
        passages=2,
    )
    train(ctx, shop, DOCUMENTS)
    url = website.publish("/shop.html", page_with_widget(SHOP, api=live.url, shop=shop))
    page = visit.page
    widget = Widget(page)

    assert load(page, url) == 200
    expect(widget.launcher).to_have_accessible_name("Open chat: Northwind Help")
    widget.open()
    expect(widget.panel).to_have_accessible_name("Northwind Help")
    expect(widget.messages.first).to_have_text("Hi! Ask me about our café, delivery or brewing.")
    expect(widget.input).to_be_focused()

    widget.record_answer_updates()
    widget.ask(QUESTION)
    expect(widget.sources.first).to_be_visible(timeout=ANSWER_TIMEOUT)

    answer = widget.last_answer().text_content() or ""
    assert answer.strip()
    updates = [text for text in dict.fromkeys(widget.answer_updates()) if text]
    assert len(updates) >= 3, f"the answer arrived in one piece: {updates}"
    # Drawn as Markdown: a "**" shows as typed until its end arrives.
    assert all(unmarked(answer).startswith(unmarked(text)) for text in updates), updates
    # Sources show the document's title (its Markdown heading), not the file's name.
    expect(widget.sources.first).to_contain_text("Café opening hours")
    assert ".md" not in (widget.sources.first.text_content() or "")
    cut = widget.cut_off.count() == 1
    said = f"Northwind Help: {answer}" + (" This answer was cut short." if cut else "")
    expect(page.locator("chatmeter-widget .sr-only")).to_have_text(said)
    *_, stored = widget.history(shop.public_key)

    # The customer's view: the conversation and its token figures.
    owner = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {shop.api_key}"})
    visit.closing.append(owner.close)
    (conversation,) = owner.get("/api/v1/conversations").json()
    detail = owner.get(f"/api/v1/conversations/{conversation['id']}").json()
    question, reply = detail["messages"]
    assert (question["role"], question["content"]) == ("user", QUESTION)
    assert (reply["role"], reply["content"]) == ("assistant", stored["text"])
    assert reply["context_tokens"] > 0 and reply["generation_tokens"] > 0
    assert conversation["message_count"] == 2
    assert conversation["tokens"] == reply["tokens"] > 0
    assert reply["sources"][0]["filename"] == "cafe-hours.md"

    screenshots.take(page, "widget.png")

    # A new page load: the same conversation, where the visitor left it.
    page.reload()
    expect(widget.panel).to_be_visible()
    expect(widget.messages).to_have_count(3)
    expect(widget.messages.nth(1)).to_have_text(QUESTION)
    expect(widget.last_answer()).to_have_text(answer)
    expect(widget.sources.first).to_contain_text("Café opening hours")

    # ... and the server continues it rather than starting another.
    widget.ask(FOLLOW_UP)
    expect(widget.cited_answers).to_have_count(2, timeout=ANSWER_TIMEOUT)
    (conversation,) = owner.get("/api/v1/conversations").json()
    assert conversation["message_count"] == 4

    # A phone: the open panel takes the whole screen, the launcher steps aside.
    page.set_viewport_size({"width": 375, "height": 740})
    box = widget.panel.bounding_box()
    assert box == {"x": 0, "y": 0, "width": 375, "height": 740}
    expect(widget.launcher).to_be_hidden()
    for control in (widget.input, widget.send, page.get_by_role("button", name="Close chat")):
        inside = control.bounding_box()
        assert inside is not None
        assert inside["x"] >= 0 and inside["x"] + inside["width"] <= 375
        assert inside["y"] >= 0 and inside["y"] + inside["height"] <= 740
    screenshots.take(page, "widget-mobile.png")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_markup_in_a_training_file_reaches_the_page_as_text(
    ctx: Context, live: LiveServer, website: Website, visit: Visit
) -> None:
    """A file name (so a title) and passage full of HTML: the citation shows the characters, and
    nothing in them runs or becomes an element."""
    # The customer shows excerpts: the passage's markup reaches the page too.
    shop = open_shop(
        ctx,
        train=False,
        allowed_domains=[website.domain],
        max_tokens=16,
        show_sources="passages",
    )
    train(ctx, shop, {MARKUP_FILE: MARKUP_TEXT})
    url = website.publish("/markup.html", page_with_widget(SHOP, api=live.url, shop=shop))
    page = visit.page
    widget = Widget(page)

    load(page, url)
    widget.open()
    widget.ask("When is the café open?")
    expect(widget.sources.first).to_be_visible(timeout=ANSWER_TIMEOUT)

    # The title made from the file's name (a plain-text file states none) keeps its markup.
    expect(widget.sources.first).to_contain_text("<img src=x onerror=window")
    assert page.evaluate("() => window.__pwned") is None
    assert widget.count("img, script, iframe, object") == 0
    assert page.locator("img").count() == 0
    passage = widget.page.locator("chatmeter-widget .source").first.get_attribute("title")
    assert passage is not None and "<script>" in passage
