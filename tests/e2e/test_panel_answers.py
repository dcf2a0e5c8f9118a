"""Answers shown well in the panel too: the test chat shows typing dots while it waits,
draws an answer's Markdown as safe elements, names its sources by the documents' titles
and marks an answer cut at the response cap; a conversation's page shows the same."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from chatmeter.answers import corrections
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.chat.models import Conversation
from chatmeter.context import Context
from tests.chat.shop import Shop
from tests.e2e.driver import ANSWER_TIMEOUT, train
from tests.e2e.test_assistant_journey import owner_account, sign_up
from tests.e2e.test_widget_chat import DOCUMENTS
from tests.support.accounts import add_tokens
from tests.support.browser import Visit
from tests.support.live import LiveServer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

OWNER = "owner@northwind.example"
GIFTS = "Do you sell gift cards?"
# The customer's own answer, in Markdown, with markup that must stay text.
GIFT_CARDS = (
    "**Yes.** Gift cards come in:\n\n- 20 pounds\n- 50 pounds\n\n"
    'Ask at the café. <img src=x onerror="window.__pwned=1"> [Terms](javascript:alert(1))'
)
LONG_QUESTION = "Tell me everything about the café's opening hours and about delivery."
ALLOWED = {"P", "STRONG", "EM", "CODE", "PRE", "UL", "OL", "LI", "A", "BR"}


def answer_elements(page: Page, bubble: str) -> list[str]:
    """The tags inside an answer's bubble."""
    return list(
        page.locator(bubble).evaluate("(b) => [...b.querySelectorAll('*')].map((e) => e.tagName)")
    )


def test_the_test_chat_and_a_conversation_show_answers_well(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, OWNER)
    account_id = owner_account(ctx, OWNER)
    with ctx.db.uow() as uow:
        created = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(
                name="Northwind Help",
                answer_mode="generated",
                max_tokens=16,
                temperature=0,
                instructions="Answer in five long sentences, giving every detail.",
            ),
            now=ctx.clock.now(),
            catalog=ctx.models,
        )
        uow.commit()
        shop = Shop(account_id, created.id, created.public_key, "")
    train(ctx, shop, DOCUMENTS)
    add_tokens(ctx, account_id, 50_000)
    corrections.save(
        ctx,
        account_id=account_id,
        assistant_id=shop.assistant_id,
        question=GIFTS,
        answer=GIFT_CARDS,
    )

    page.goto(f"{live.url}/panel/assistants/{shop.assistant_id}/test")
    # Record whether the dots ever showed: the answer may come too fast to catch them.
    page.evaluate(
        """() => {
          window.__typing = false;
          new MutationObserver(() => {
            const dots = document.querySelector("[data-chat-log] .bubble.typing .dot");
            if (dots) window.__typing = true;
          }).observe(document.body, { childList: true, subtree: true, attributes: true });
        }"""
    )
    box = page.get_by_label("Your question")
    box.fill(GIFTS)
    page.get_by_role("button", name="Send", exact=True).click()
    answer = page.locator("[data-chat-log] .msg-bot .bubble").last
    expect(answer.locator("strong")).to_have_text("Yes.", timeout=ANSWER_TIMEOUT)
    expect(answer.locator("li")).to_have_text(["20 pounds", "50 pounds"])
    expect(answer).to_contain_text('<img src=x onerror="window.__pwned=1">')
    assert page.evaluate("window.__typing") is True
    assert set(answer_elements(page, "[data-chat-log] .msg-bot .bubble >> nth=-1")) <= ALLOWED
    assert answer.locator("a").count() == 0  # a javascript: link stays text
    assert page.evaluate("window.__pwned") is None

    # A model's answer cut at the cap is marked; its sources are the documents' titles.
    box.fill(LONG_QUESTION)
    page.get_by_role("button", name="Send", exact=True).click()
    cut = page.locator("[data-chat-log] .msg-bot").last
    expect(cut.locator(".cut-off")).to_have_text(re.compile("cut short"), timeout=ANSWER_TIMEOUT)
    names = cut.locator(".source-name")
    expect(names.first).to_be_visible()
    assert set(names.all_inner_texts()) <= {"Café opening hours", "Delivery"}

    # The conversation's page: the same Markdown as elements, and the cut-off marked.
    with ctx.db.read() as session:
        (conversation,) = session.scalars(select(Conversation.id)).all()
    page.goto(f"{live.url}/panel/assistants/{shop.assistant_id}/conversations/{conversation}")
    stored = page.locator(".thread .msg-bot .bubble").first
    expect(stored.locator("strong")).to_have_text("Yes.")
    expect(stored.locator("li")).to_have_count(2)
    assert set(answer_elements(page, ".thread .msg-bot .bubble >> nth=0")) <= ALLOWED
    expect(page.get_by_text("Reached the longest answer")).to_be_visible()
    expect(page.locator(".thread .source-name").first).not_to_contain_text(".md")
    assert page.evaluate("window.__pwned") is None
    assert not [line for line in visit.console if line.startswith(("error", "pageerror"))]
