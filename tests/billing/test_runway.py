"""The runway forecast read from the ledger (``chatmeter.billing.runway``), through the
REST API as well, on SQLite and PostgreSQL: every figure checkable against the entries."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from chatmeter.billing.runway import account_runway, email_sentence, ordinal, summary
from chatmeter.clock import FixedClock
from chatmeter.context import Context
from tests.support.accounts import add_tokens, new_account, spend
from tests.support.api import Caller, caller


def with_history(
    ctx: Context, clock: FixedClock, account_id: int, per_day: list[int], *, hour: int = 12
) -> None:
    """Spend ``per_day`` on the days before the clock's day (oldest first), at ``hour``
    UTC, and bring the clock back."""
    now = clock.now()
    for back, tokens in enumerate(reversed(per_day), start=1):
        clock.set(now.replace(hour=hour) - dt.timedelta(days=back))
        if tokens:
            spend(ctx, account_id, tokens, key=f"day-{back}")
    clock.set(now)


def opened_weeks_ago(ctx: Context, clock: FixedClock, email: str, zone: str = "UTC") -> int:
    now = clock.now()
    clock.set(now - dt.timedelta(days=40))
    account = new_account(ctx, email=email, timezone=zone)
    add_tokens(ctx, account, 200_000)
    clock.set(now)
    return account


def test_the_forecast_reads_each_local_day_from_the_ledger(ctx: Context, clock: FixedClock) -> None:
    account = opened_weeks_ago(ctx, clock, "steady@example.com")
    with_history(ctx, clock, account, [1000] * 14)  # 200,000 − 14,000 left
    spend(ctx, account, 250, key="today")
    with ctx.db.read() as session:
        result = account_runway(session, settings=ctx.settings, account_id=account, now=clock.now())
    today = clock.now().date()  # 15 November 2026
    assert result.history_days == 14
    assert [d.tokens for d in result.history] == [1000] * 14
    assert result.history[-1].day == today - dt.timedelta(days=1)
    assert result.spent_today == 250
    assert result.available == 200_000 - 14_250
    assert result.pace == 1000
    assert result.renews_on == dt.date(2026, 12, 1)
    # 750 more today, then 1,000 a day for 15 days to the 1st: 15,750 < 185,750.
    assert result.tokens_until_renewal == 15_750
    assert result.lasts_until_renewal and result.runs_out_on is None
    assert result.month_tokens == 30_000 and result.month_packages == 6
    assert "last until the renewal on 1 December 2026" in summary(result)


def test_local_days_follow_the_account_time_zone(ctx: Context, clock: FixedClock) -> None:
    """23:30 UTC is the next day in Berlin: each day's spend lands on the local day."""
    account = opened_weeks_ago(ctx, clock, "berlin@example.com", "Europe/Berlin")
    with_history(ctx, clock, account, [500] * 10, hour=23)
    with ctx.db.read() as session:
        result = account_runway(session, settings=ctx.settings, account_id=account, now=clock.now())
    # 23:30 UTC on the 14th is already the 15th (today) in Berlin.
    assert result.spent_today == 500
    assert [d.tokens for d in result.history] == [500] * 9
    assert result.history[0].day == dt.date(2026, 11, 6)


def test_too_little_history_is_said(ctx: Context, clock: FixedClock) -> None:
    account = opened_weeks_ago(ctx, clock, "new@example.com")
    with_history(ctx, clock, account, [1000] * 3)
    with ctx.db.read() as session:
        result = account_runway(session, settings=ctx.settings, account_id=account, now=clock.now())
    assert not result.ready
    assert "Not enough history" in summary(result) and "3 days" in summary(result)
    assert email_sentence(result) is None


def test_a_run_out_before_the_renewal_says_what_to_buy(ctx: Context, clock: FixedClock) -> None:
    now = clock.now()
    clock.set(now - dt.timedelta(days=30))
    account = new_account(ctx, email="short@example.com")
    add_tokens(ctx, account, 15_000)
    clock.set(now)
    with_history(ctx, clock, account, [1000] * 10)  # 5,000 left, 1,000 a day
    with ctx.db.read() as session:
        result = account_runway(session, settings=ctx.settings, account_id=account, now=now)
    assert result.runs_out_on == dt.date(2026, 11, 19)  # the 15th … the 19th spend 5,000
    assert result.tokens_until_renewal == 16_000  # the 15th to the 30th
    assert result.packages_to_last == 3  # 11,000 short
    assert (
        email_sentence(result) == "At your pace (about 1,000 tokens a day) you will run out on "
        "19 November; 3 more packages last until the 1st."
    )


def test_ordinals() -> None:
    assert [ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st",
    ]  # fmt: skip


# --- GET /api/v1/forecast --------------------------------------------------------------


def test_the_api_shows_the_figures_it_read(
    ctx: Context, clock: FixedClock, app_client: TestClient
) -> None:
    account_at = clock.now()
    clock.set(account_at - dt.timedelta(days=30))
    owner = caller(ctx, app_client, "api@example.com")
    add_tokens(ctx, owner.account_id, 12_000)
    clock.set(account_at)
    with_history(ctx, clock, owner.account_id, [800] * 7 + [0] + [800] * 6)
    body = owner.client.get("/api/v1/forecast").json()
    assert body["status"] == "ok"
    assert [d["tokens"] for d in body["daily"]] == [800] * 7 + [0] + [800] * 6
    assert body["daily"][-1]["day"] == "2026-11-14"
    assert body["available"] == 12_000 - 13 * 800
    assert body["runs_out_on"] is not None and body["packages_to_last"] >= 1
    assert body["projection"][0]["day"] == "2026-11-15"
    running = 0
    for day in body["projection"]:  # the run-out date is where the projection adds up
        running += day["tokens"]
        if running >= body["available"]:
            assert day["day"] == body["runs_out_on"]
            break
    assert set(body["by_weekday"]) == {
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    }  # fmt: skip
    assert "run out on" in body["summary"]


def test_the_api_forecast_of_a_new_account(alice: Caller) -> None:
    body = alice.client.get("/api/v1/forecast").json()
    assert body["status"] == "not_enough_history"
    assert body["runs_out_on"] is None and body["daily"] == []


# --- the below-20% email -------------------------------------------------------------


def test_the_low_balance_email_says_when_the_tokens_run_out_and_what_lasts(
    ctx: Context, clock: FixedClock, app_client: TestClient
) -> None:
    """A turn settled through the API takes the balance below 20%: its email carries the
    forecast as it stands at that moment, the same sentence the forecast gives."""
    import json

    from sqlalchemy import select

    from chatmeter.notifications.models import OutboxMessage
    from chatmeter.notifications.templates import render

    now = clock.now()
    clock.set(now - dt.timedelta(days=12))  # the 3rd: this month's tokens
    owner = caller(ctx, app_client, "low@example.com")
    add_tokens(ctx, owner.account_id, 15_000)
    clock.set(now)
    with_history(ctx, clock, owner.account_id, [1000] * 10)  # 5,000 left: 33%, not low yet
    hold = owner.client.post("/api/v1/holds", json={"tokens": 2500}).json()
    settled = owner.client.post(
        f"/api/v1/holds/{hold['id']}/settle", json={"context": 2000, "generation": 500}
    )
    assert settled.status_code == 200, settled.text

    with ctx.db.read() as session:
        (message,) = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "low_balance")
        ).all()
        expected = email_sentence(
            account_runway(session, settings=ctx.settings, account_id=owner.account_id, now=now)
        )
    context = json.loads(message.context)
    assert expected is not None and context["forecast"] == expected
    # Today (the 15th) already spent 2,500, more than its 1,000: 2,500 left at 1,000 a day
    # last the 16th and 17th, and run out on the 18th; the 1st is 13 days away.
    assert "you will run out on 18 November; 3 more packages last until the 1st." in expected
    email = render("low_balance", context, base_url="https://x.example")
    assert expected in email.text and expected in email.html
