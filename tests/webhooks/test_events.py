"""Each of the customer's events is recorded once, by the code that causes it, with the
figures a receiver can check: the balance (low, depleted, restored), a paid purchase,
a failed renewal, an assistant stopped by its cap, a usage surge."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from chatmeter.assistants.models import Assistant
from chatmeter.billing import periods, purchases, renewals
from chatmeter.chat import caps
from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.errors import Unavailable
from chatmeter.jobs import registry
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import GrantSource
from chatmeter.notifications import balance_notices
from chatmeter.notifications.models import OutboxMessage
from tests.billing.test_renewal import FAILED, SUCCEEDED, ScriptedGateway, setup, utc
from tests.chat.test_monthly_caps import Account, start
from tests.support.accounts import new_account, spend
from tests.support.ledger import assert_ledger_clean
from tests.support.usage_days import history, new_assistant, today
from tests.webhooks.support import events_of


def email_kinds(ctx: Context) -> list[str]:
    with ctx.db.read() as session:
        return list(session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))


def grant(ctx: Context, account_id: int, tokens: int, key: str) -> None:
    """Tokens given as every grant is: the ledger's notices handed on before commit."""
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        ledger.grant(
            uow.session,
            account_id=account_id,
            amount=tokens,
            source=GrantSource.ADJUSTMENT,
            key=key,
            period=periods.period_of(now, "UTC"),
            now=now,
        )
        balance_notices.send_raised(uow.session, now=now)
        uow.commit()


def test_the_balance_events_follow_the_emails_and_restored_follows_only_depleted(
    ctx: Context,
) -> None:
    account = new_account(ctx)
    grant(ctx, account, 5000, "first")  # from zero, but nothing was depleted
    assert events_of(ctx) == []
    spend(ctx, account, 4001, "a")  # 999 of 5,000 left: below 20%
    spend(ctx, account, 999, "b")  # zero
    grant(ctx, account, 5000, "back")  # tokens return
    grant(ctx, account, 5000, "more")  # more on top: nothing to tell
    spend(ctx, account, 10_000, "c")  # zero again (already warned: low is not re-armed)
    grant(ctx, account, 100, "again")
    types = [e["type"] for e in events_of(ctx)]
    assert types == [
        "balance.low",
        "balance.depleted",
        "balance.restored",
        "balance.depleted",
        "balance.restored",
    ]
    low, depleted, restored = events_of(ctx)[:3]
    assert {k: low["data"][k] for k in ("balance", "available", "limit", "percent_left")} == {
        "balance": 999,
        "available": 999,
        "limit": 5000,
        "percent_left": 19,
    }
    assert (depleted["data"]["balance"], depleted["data"]["limit"]) == (0, 5000)
    assert (restored["data"]["balance"], restored["data"]["limit"]) == (5000, 10_000)
    assert low["data"]["renews_on"] == "2026-12-01" and low["data"]["period"] == "2026-11"
    # Emails stay as they were: the warning and the empty one, nothing for "restored".
    assert email_kinds(ctx) == ["low_balance", "depleted", "depleted"]
    assert_ledger_clean(ctx)


def test_a_paid_purchase_is_told_with_the_invoices_figures(ctx: Context) -> None:
    account = new_account(ctx)
    invoice = purchases.purchase(ctx, account_id=account, packages=2, key="order-1")
    purchases.purchase(ctx, account_id=account, packages=2, key="order-1")  # a retry
    [paid] = events_of(ctx, "purchase.paid")
    assert paid["data"]["invoice"]["id"] == invoice.id
    assert paid["data"]["invoice"]["number"] == invoice.number
    assert paid["data"]["invoice"]["tokens"] == 10_000
    assert paid["data"]["invoice"]["amount"] == "18.00"
    assert paid["data"]["invoice"]["status"] == "paid"
    assert paid["data"]["auto_top_up"] is False
    assert paid["data"]["balance"] == 10_000


def test_each_failed_renewal_attempt_is_told_and_the_last_says_so(ctx: Context) -> None:
    gateway = ScriptedGateway(SUCCEEDED, then=FAILED)
    ctx = setup(ctx, gateway, renewal_retry_hours=6, renewal_max_attempts=2)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1)
    for attempt in range(2):
        ctx.clock.set(utc(2026, 12, 1, 0, 1) + dt.timedelta(hours=6 * attempt))
        renewals.run_renewals(ctx)
        renewals.run_renewals(ctx)  # the job again: nothing new
    first, last = events_of(ctx, "renewal.failed")
    assert (first["data"]["attempt"], first["data"]["final"]) == (1, False)
    assert first["data"]["next_attempt_at"] == "2026-12-01 06:01:00+00:00"
    assert first["data"]["reason"] == "card declined"
    assert (last["data"]["attempt"], last["data"]["final"]) == (2, True)
    assert last["data"]["next_attempt_at"] is None
    assert first["data"]["invoice"]["kind"] == "renewal"


@pytest.mark.model
def test_a_turn_refused_by_a_monthly_cap_is_told_once(ctx: Context) -> None:
    account = Account(ctx, monthly_token_cap=1_000)
    probe = start(ctx, account.capped_key)  # what a turn reserves
    probe.abandon()
    used = 1_000 - probe.held + 1  # room for all but one token of the next turn
    account.use(used)
    for _ in range(3):
        with pytest.raises(Unavailable):
            start(ctx, account.capped_key)
    [reached] = events_of(ctx, "assistant.cap_reached")
    assert reached["data"] == {
        "assistant": {"id": account.capped, "name": "Capped"},
        "cap": "monthly",
        "cap_tokens": 1_000,
        "used_tokens": used,
        "period": f"{account.today():%Y-%m}",
    }
    assert events_of(ctx, "balance.low") == []


def test_a_settled_turn_that_fills_the_daily_cap_is_told_once_a_day(
    ctx: Context, clock: FixedClock
) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Front desk")
    with ctx.db.uow() as uow:
        assistant = uow.session.get(Assistant, bot)
        assert assistant is not None
        assistant.daily_token_cap = 500
        uow.commit()

    def settle(tokens: int) -> None:
        day = caps.local_day(clock.now(), "UTC")
        with ctx.db.uow() as uow:
            assistant = uow.session.get(Assistant, bot)
            assert assistant is not None
            caps.take(uow.session, assistant=assistant, day=day, tokens=tokens)
            reached = caps.reached_after_settle(uow.session, assistant_id=bot, day=day)
            if reached is not None:
                caps.tell_reached(
                    uow.session,
                    account_id=account,
                    assistant_id=bot,
                    reached=reached,
                    now=clock.now(),
                )
            uow.commit()

    settle(499)
    assert events_of(ctx) == []
    settle(1)  # at the cap
    clock.advance(days=1)
    settle(500)  # the next day's
    first, second = events_of(ctx, "assistant.cap_reached")
    assert (first["data"]["period"], first["data"]["used_tokens"]) == ("2026-11-15", 500)
    assert (second["data"]["cap"], second["data"]["period"]) == ("daily", "2026-11-16")


def test_a_surge_is_told_once_a_day_with_the_emails_figures(
    ctx: Context, clock: FixedClock
) -> None:
    account = new_account(ctx, email="shop@example.com")
    front = new_assistant(ctx, account, "Front desk")
    history(ctx, clock, account, front, [0, 0, 3000, 3100, 0, 3200, 3100, 2900, 0, 3100, 3000])
    today(ctx, clock, account, front, 12_400)
    for _ in range(3):
        registry.JOBS["usage-surge"].run(ctx)
    [surge] = events_of(ctx, "usage.surge")
    assert surge["data"] == {
        "assistant": {"id": front, "name": "Front desk"},
        "day": "2026-11-15",
        "today_tokens": 12_400,
        "typical_tokens": 3100,
        "days_counted": 7,
        "ratio": "4",
        "multiple": "3",
        "min_tokens": 2000,
        # Each day's tokens came at one instant: its busiest hour is all of it.
        "window": "day",
        "hour_tokens": 12_400,
        "typical_hour_tokens": 3100,
    }
