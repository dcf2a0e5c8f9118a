"""Surge alerts in the panel: the dashboard's line per assistant surging today, and the
Settings page's form (``chatmeter.chat.surges``)."""

from __future__ import annotations

import datetime as dt
import html

from sqlalchemy import select

from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import User
from chatmeter.clock import FixedClock
from chatmeter.context import Context
from tests.support.panel import Panel
from tests.support.usage_days import answered, history, new_assistant, today


def test_the_dashboard_has_a_line_per_assistant_surging(
    ctx: Context, clock: FixedClock, panel: Panel
) -> None:
    panel.sign_up("owner@example.com")
    account = _account_of(ctx, "owner@example.com")
    bot = new_assistant(ctx, account, "Front desk")
    calm = new_assistant(ctx, account, "Returns")
    page = panel.client.get("/panel/dashboard").text
    assert 'data-testid="surges"' not in page
    history(ctx, clock, account, bot, [3100] * 6)
    history(ctx, clock, account, calm, [3100] * 6)
    today(ctx, clock, account, bot, 12_400)
    today(ctx, clock, account, calm, 3000)
    page = html.unescape(panel.client.get("/panel/dashboard").text)
    assert "Front desk</a>: 12,400 tokens today, about 4× its typical 3,100" in page
    assert f'href="/panel/assistants/{bot}/conversations"' in page
    assert "Returns</a>:" not in page


def _account_of(ctx: Context, email: str) -> int:
    with ctx.db.read() as session:
        account = session.scalar(select(User.account_id).where(User.email == email))
    assert account is not None
    return account


def test_the_settings_page_changes_them(ctx: Context, panel: Panel) -> None:
    panel.sign_up("owner@example.com")
    account = _account_of(ctx, "owner@example.com")
    page = panel.client.get("/panel/settings").text
    assert 'id="surge-multiple"' in page and 'value="3"' in page
    saved = panel.post(
        "/panel/settings/surge-alerts",
        {"surge_multiple": "4.5", "surge_min_tokens": "10,000"},
        page="/panel/settings",
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("#surge")
    refused = panel.post(
        "/panel/settings/surge-alerts",
        {"surge_multiple": "1", "surge_min_tokens": "100"},
        page="/panel/settings",
    )
    assert refused.status_code == 422
    assert "between 1.5 and 100" in refused.text
    with ctx.db.read() as session:
        found = accounts.get_account(session, account_id=account)
        assert (found.surge_multiple_tenths, found.surge_min_tokens) == (45, 10_000)


def test_the_dashboard_tells_a_spike_in_the_last_hour(
    ctx: Context, clock: FixedClock, panel: Panel
) -> None:
    panel.sign_up("owner@example.com")
    account = _account_of(ctx, "owner@example.com")
    bot = new_assistant(ctx, account, "Front desk")
    midnight = clock.now().replace(hour=0, minute=0)
    for back in range(1, 6):
        for hour in (9, 12, 15):
            at = midnight - dt.timedelta(days=back, hours=-hour)
            answered(ctx, account, bot, at, 1000)
    answered(ctx, account, bot, clock.now() - dt.timedelta(minutes=20), 5000)
    page = html.unescape(panel.client.get("/panel/dashboard").text)
    assert (
        "Front desk</a>: 5,000 tokens in the last hour, about 5× its typical busiest hour "
        "of 1,000 (5,000 today)"
    ) in page
