"""Journeys 4 and 5: an account out of tokens shows visitors nothing at all, and comes back
after a purchase; a website that is not allowed gets no widget and no chat."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing import periods, purchases
from chatmeter.context import Context
from chatmeter.ledger import service as ledger
from tests.chat.shop import assert_says_nothing_about_money, available, holds, open_shop
from tests.e2e.driver import Widget, has_widget, load, mentions_money, page_with_widget
from tests.e2e.pages import SHOP
from tests.support.browser import Visit
from tests.support.live import LiveServer
from tests.support.website import Website

UNAVAILABLE = "This assistant is not available right now."


def run_out(ctx: Context, account_id: int) -> None:
    """Take every available token away, as if visitors had used them all."""
    with ctx.db.uow() as uow:
        ledger.debit(
            uow.session,
            account_id=account_id,
            amount=available(ctx, account_id),
            period=periods.period_of(ctx.clock.now(), "UTC"),
            now=ctx.clock.now(),
        )
        uow.commit()


def test_out_of_tokens_the_widget_vanishes_and_returns_after_a_purchase(
    ctx: Context, live: LiveServer, website: Website, visit: Visit
) -> None:
    shop = open_shop(ctx, train=False, allowed_domains=[website.domain], tokens=2_000)
    url = website.publish("/out.html", page_with_widget(SHOP, api=live.url, shop=shop))
    page = visit.page
    widget = Widget(page)
    assert load(page, url) == 200
    widget.open()

    # Tokens run out while the visitor has the widget open: a neutral word, nothing more.
    run_out(ctx, shop.account_id)
    widget.ask("Do you sell decaf?")
    expect(widget.notices.last).to_have_text(UNAVAILABLE)
    expect(widget.answers).to_have_count(1)  # the welcome message only
    assert holds(ctx, shop.account_id) == []  # refused before anything was reserved
    assert_says_nothing_about_money(widget.shadow_text().replace("Powered by Chatmeter", ""))

    # The next page load: no widget at all, and no word about why.
    assert load(page, url) == 404
    assert not has_widget(page)
    assert mentions_money(visit.text_anywhere()) == []
    assert_says_nothing_about_money(page.evaluate("() => document.body.innerText"))
    assert [m for m in visit.console if mentions_money(m)] == []
    assert not [m for m in visit.console if m.startswith("pageerror")]

    purchases.purchase(ctx, account_id=shop.account_id, packages=1)
    assert load(page, url) == 200
    expect(widget.launcher).to_be_visible()
    # The widget itself logs nothing; the browser notes the refused requests' statuses.
    assert visit.console == [
        "error: Failed to load resource: the server responded with a status of 503 "
        "(Service Unavailable)",
        "error: Failed to load resource: the server responded with a status of 404 (Not Found)",
    ]


def test_a_website_that_is_not_allowed_gets_no_widget_and_no_chat(
    ctx: Context, live: LiveServer, website: Website, visit: Visit
) -> None:
    shop = open_shop(ctx, train=False, allowed_domains=["northwind.example", "*.northwind.example"])
    url = website.publish("/copycat.html", page_with_widget(SHOP, api=live.url, shop=shop))
    page = visit.page

    # The server says 403 without CORS headers, so the browser keeps even that from the page.
    assert load(page, url) == "net::ERR_FAILED"
    assert not has_widget(page)
    assert not [m for m in visit.console if m.startswith("pageerror")]

    # The page's own script cannot chat either: the browser is refused before the POST.
    refused = page.evaluate(
        """async (url) => {
          try {
            await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                              body: JSON.stringify({message: 'hello'})});
            return 'answered';
          } catch (error) { return 'refused'; }
        }""",
        f"{live.url}/api/v1/public/{shop.public_key}/chat",
    )
    assert refused == "refused"
    with httpx.Client(base_url=live.url) as server:
        chat = server.post(
            f"/api/v1/public/{shop.public_key}/chat",
            json={"message": "hello"},
            headers={"Origin": website.origin},
        )
        settings = server.get(
            f"/api/v1/public/{shop.public_key}/widget", headers={"Origin": website.origin}
        )
    assert (settings.status_code, settings.content) == (403, b"")
    assert chat.status_code == 403
    assert chat.json()["error"]["code"] == "forbidden"
    assert "access-control-allow-origin" not in chat.headers

    # Listing the website is what it takes.
    with ctx.db.uow() as uow:
        assistants.update_assistant(
            uow.session,
            account_id=shop.account_id,
            assistant_id=shop.assistant_id,
            fields=AssistantFields(allowed_domains=["northwind.example", website.domain]),
            now=ctx.clock.now(),
        )
        uow.commit()
    assert load(page, url) == 200
    expect(Widget(page).launcher).to_be_visible()
