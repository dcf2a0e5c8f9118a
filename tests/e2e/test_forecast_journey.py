"""The dashboard's runway forecast in the browser: an account that spends 1,000 tokens a
day sees when its tokens run out and how many packages last until the 1st, and "Get more
tokens" opens with that number already chosen (buying only when the owner confirms)."""

from __future__ import annotations

import datetime as dt
import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from chatmeter.accounts.models import Account
from chatmeter.billing.models import Invoice
from chatmeter.context import Context
from tests.billing.test_runway import with_history
from tests.e2e.test_panel import account_of, sign_up
from tests.support.accounts import add_tokens
from tests.support.browser import Visit
from tests.support.live import LiveServer

EMAIL = "owner@northwind.example"


def test_the_dashboard_forecasts_the_run_out_and_preselects_what_lasts(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, EMAIL)
    account = account_of(ctx, EMAIL)
    now = ctx.clock.now()  # 15 November 2026
    with ctx.db.uow() as uow:  # opened on the 3rd, when it got this month's tokens
        found = uow.session.get(Account, account)
        assert found is not None
        found.created_at = now - dt.timedelta(days=12)
        uow.commit()
    ctx.clock.set(now - dt.timedelta(days=12))
    add_tokens(ctx, account, 15_000)
    ctx.clock.set(now)
    with_history(ctx, ctx.clock, account, [1000] * 10)  # 5,000 left, 1,000 a day

    page.goto(f"{live.url}/panel/dashboard")
    card = page.get_by_test_id("forecast")
    expect(card.get_by_test_id("forecast-summary")).to_contain_text("run out on")
    expect(card.get_by_test_id("forecast-summary")).to_contain_text("19 November")
    # 16 days to the 1st at 1,000 a day, 5,000 left: 11,000 short, 3 packages.
    expect(card.get_by_test_id("forecast-buy")).to_have_text("Get 3 more packages")
    card.get_by_text("How this is worked out").click()
    expect(card.locator("tbody tr")).to_have_count(10)

    card.get_by_test_id("forecast-buy").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    expect(window.get_by_label("How many packages?")).to_have_value("3")
    expect(window.locator('[data-quote="tokens"]')).to_have_text("15,000")
    with ctx.db.read() as session:  # chosen, not bought
        assert session.scalar(select(func.count(Invoice.id))) == 0
    window.get_by_role("button", name=re.compile("Confirm and pay")).click()
    expect(window.get_by_role("status")).to_contain_text("15,000 tokens added")
    assert [m for m in visit.console if m.startswith(("error", "pageerror"))] == []
