"""Issue 10's journey in Chromium: a visitor asks the widget something the documents do
not cover and hears the fallback; the customer, signed in to the panel, finds it under
unanswered questions and writes the answer; the visitor asks again and gets that answer
with the source "Corrected answer", rates it helpful, and the panel shows the rating."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from chatmeter.retrieval.search import CORRECTED_ANSWER
from tests.chat.shop import Shop
from tests.e2e.driver import ANSWER_TIMEOUT, Widget, load, page_with_widget, train
from tests.e2e.pages import SHOP
from tests.e2e.test_assistant_journey import owner_account, sign_up
from tests.e2e.test_widget_chat import DOCUMENTS
from tests.support.accounts import add_tokens
from tests.support.browser import Screenshots, Visit
from tests.support.live import LiveServer
from tests.support.website import Website

OWNER = "owner@northwind.example"
QUESTION = "Do you sell gift cards?"
ANSWER = "Yes: gift cards of 20, 50 and 100 pounds, at the café or by email."


def test_the_customer_corrects_what_the_assistant_did_not_know(
    ctx: Context, live: LiveServer, website: Website, visit: Visit, screenshots: Screenshots
) -> None:
    panel = visit.page.context.new_page()
    panel.set_default_timeout(15_000)
    sign_up(panel, live, OWNER)
    account_id = owner_account(ctx, OWNER)
    with ctx.db.uow() as uow:
        created = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(
                name="Northwind Help", allowed_domains=[website.domain], max_tokens=48
            ),
            now=ctx.clock.now(),
            catalog=ctx.models,
        )
        uow.commit()
        shop = Shop(account_id, created.id, created.public_key, "")
    train(ctx, shop, DOCUMENTS)
    add_tokens(ctx, account_id, 50_000)

    # The visitor asks what no document says: the fallback, naming the contact email.
    page = visit.page
    widget = Widget(page)
    votes = page.locator("chatmeter-widget .votes")
    url = website.publish("/gifts.html", page_with_widget(SHOP, api=live.url, shop=shop))
    assert load(page, url) == 200
    widget.open()
    widget.ask(QUESTION)
    expect(votes).to_have_count(1, timeout=ANSWER_TIMEOUT)
    expect(widget.last_answer()).to_contain_text("I'm not sure about that")
    expect(widget.last_answer()).to_contain_text(OWNER)
    expect(widget.sources).to_have_count(0)

    # The customer finds it under unanswered questions and writes the answer.
    panel.goto(f"{live.url}/panel/assistants/{shop.assistant_id}")
    panel.get_by_role("link", name="Answers", exact=True).click()
    unanswered = panel.get_by_test_id("unanswered")
    expect(unanswered).to_contain_text(QUESTION)
    unanswered.get_by_role("link", name="Write the answer").first.click()
    expect(panel.get_by_label("Question")).to_have_value(QUESTION)
    panel.get_by_label("Answer", exact=True).fill(ANSWER)
    panel.get_by_role("button", name="Save the answer").click()
    expect(panel).to_have_url(re.compile(r"/answers\?done=saved$"))
    expect(panel.get_by_test_id("corrections")).to_contain_text(ANSWER)
    expect(unanswered.get_by_text("Corrected", exact=True)).to_be_visible()

    # The visitor asks again: the customer's answer, with its source; and rates it.
    widget.ask(QUESTION)
    expect(votes).to_have_count(2, timeout=ANSWER_TIMEOUT)
    expect(widget.last_answer()).to_have_text(ANSWER)
    expect(widget.sources.last).to_have_text(CORRECTED_ANSWER)
    helpful = votes.last.get_by_role("button", name="Helpful", exact=True)
    expect(helpful).to_have_attribute("aria-pressed", "false")
    helpful.focus()
    page.keyboard.press("Enter")  # reachable from the keyboard
    expect(helpful).to_have_attribute("aria-pressed", "true")
    expect(votes.last.get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "false"
    )
    screenshots.take(page, "widget-corrected.png")

    # The panel shows the rating on the conversation.
    panel.reload()
    panel.get_by_test_id("unanswered").get_by_role("link", name="Conversation").first.click()
    expect(panel.locator(".answer-tags").get_by_text("Corrected answer")).to_be_visible()
    expect(panel.get_by_text("Visitor: helpful")).to_be_visible()
    expect(panel.get_by_text("Said it did not know")).to_be_visible()
    screenshots.take(panel, "panel-answers-conversation.png")

    # After a reload the widget still shows the vote given.
    page.reload()
    widget.open()
    expect(votes.last.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    assert not [line for line in visit.console if line.startswith(("error", "pageerror"))]
