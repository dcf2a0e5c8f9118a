"""The owner turns auto top-up on in the panel, a test chat crosses the threshold, and the
worker (in-process, woken by the turn's commit) buys the packages once: the dashboard
says so."""

from __future__ import annotations

import re
import threading

from playwright.sync_api import expect
from sqlalchemy import select

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing import purchases
from chatmeter.billing.models import Invoice, InvoiceKind
from chatmeter.context import Context
from chatmeter.jobs.worker import JobEvent, Worker
from chatmeter.llm.mock import MockProvider
from tests.chat.shop import Shop
from tests.e2e.driver import ANSWER_TIMEOUT, train
from tests.e2e.test_panel import account_of, balance, shown_balance, sign_up
from tests.support.browser import Visit
from tests.support.ledger import assert_ledger_clean
from tests.support.live import LiveServer

EMAIL = "owner@northwind.example"
ANSWER = "The café is open from 9:00 to 13:00 on Saturdays."
DOCUMENTS = {
    "cafe-hours.md": (
        "# Café opening hours\n\nThe café is open Monday to Friday from 8:00 to 18:00. "
        "On Saturdays it is open from 9:00 to 13:00, and it is closed on Sundays.\n"
    ),
}


def test_auto_top_up_fires_once_when_a_chat_crosses_the_threshold(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, EMAIL)
    account = account_of(ctx, EMAIL)
    purchases.purchase(ctx, account_id=account, packages=1)
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

    # The in-process worker, woken when a transaction queued work for it.
    fired = threading.Event()

    def watch(event: JobEvent) -> None:
        if event.phase == "finished" and event.result and event.result.get("started"):
            fired.set()

    worker = Worker(ctx, names=["auto-top-up"], on_job=watch)
    ctx.db.wake_worker = worker.wake
    worker.start()
    visit.closing.append(worker.stop)

    # 1. The owner turns it on: 1 package whenever fewer than 4,990 tokens are left.
    page.goto(f"{live.url}/panel/billing")
    section = page.get_by_test_id("auto-top-up")
    expect(section.get_by_test_id("auto-top-up-state")).to_have_text("Off")
    section.get_by_label("Turn on auto top-up").check()
    section.get_by_label("When the balance falls below (tokens)").fill("4,990")
    section.get_by_label(re.compile("Buy this many packages")).fill("1")
    section.get_by_label(re.compile("At most this many times a month")).fill("3")
    section.get_by_role("button", name="Save auto top-up").click()
    expect(page).to_have_url(re.compile(r"done=auto-top-up"))
    expect(page.get_by_role("status")).to_have_text("Auto top-up is saved.")
    expect(section.get_by_test_id("auto-top-up-state")).to_have_text("On")
    page.goto(f"{live.url}/panel/dashboard")
    line = page.get_by_test_id("auto-top-up-line")
    expect(line).to_contain_text("1 package when below 4,990 tokens · 0 of 3 this month")
    assert not fired.is_set()

    # 2. One question in the test chat takes the balance below 4,990.
    page.goto(f"{live.url}/panel/assistants/{bot.id}/test")
    page.get_by_label("Your question").fill("When are you open on Saturdays?")
    page.get_by_role("button", name="Send", exact=True).click()
    answer = page.locator("[data-chat-log] .msg-bot .bubble").last
    expect(answer).to_contain_text("13:00", timeout=ANSWER_TIMEOUT)
    assert fired.wait(timeout=30), "the worker did not top up"

    # 3. The dashboard shows it fired once, and the tokens it bought.
    page.goto(f"{live.url}/panel/dashboard")
    expect(line).to_contain_text("1 package when below 4,990 tokens · 1 of 3 this month")
    with ctx.db.read() as session:
        (invoice,) = session.scalars(
            select(Invoice).where(Invoice.account_id == account, Invoice.kind == InvoiceKind.TOPUP)
        ).all()
    assert invoice.status == "paid"
    assert 5000 < balance(ctx, account) < 10_000
    assert shown_balance(page) == balance(ctx, account)
    page.goto(f"{live.url}/panel/billing")
    expect(page.locator("td", has_text="auto top-up")).to_have_count(1)
    assert_ledger_clean(ctx)
