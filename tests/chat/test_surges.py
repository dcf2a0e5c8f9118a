"""Surge alerts (``chatmeter.chat.surges``) on SQLite and PostgreSQL: the rule, the job's
one email per assistant and local day under repeats and two workers, the email, the
dashboard line and the settings in the API, the CLI and the panel.

Usage is written as the stored answers the Usage page counts (a conversation and its
assistant message with its tokens), at chosen instants: the figure under test is that
page's per-assistant daily tokens, and exact amounts make every expectation checkable.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from chatmeter.accounts import service as accounts
from chatmeter.accounts import surge_settings
from chatmeter.assistants import service as assistants
from chatmeter.chat import surges
from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.errors import InvalidInput
from chatmeter.jobs import registry
from chatmeter.notifications.models import OutboxMessage
from chatmeter.notifications.templates import render
from tests.support.accounts import new_account
from tests.support.api import Caller
from tests.support.usage_days import answered, history, new_assistant, today
from tests.test_cli import Operator

# --- helpers -------------------------------------------------------------------------


def surge_emails(ctx: Context) -> list[OutboxMessage]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "usage_surge")
                .order_by(OutboxMessage.id)
            )
        )


def settings(ctx: Context, account_id: int, **fields: object) -> None:
    with ctx.db.uow() as uow:
        accounts.update_account(uow.session, account_id=account_id, now=ctx.clock.now(), **fields)  # type: ignore[arg-type]
        uow.commit()


def run_job(ctx: Context) -> dict[str, object]:
    return registry.JOBS["usage-surge"].run(ctx)


# --- the rule ------------------------------------------------------------------------


def test_the_typical_day_is_the_median_of_the_days_with_use() -> None:
    assert surges.typical_day([0, 1000, 0, 3000, 2000]) == 2000
    assert surges.typical_day([1000, 2000, 0, 3001, 4000]) == 2501  # (2000 + 3001) / 2, half up
    assert surges.typical_day([900, 100_000, 1000, 1100]) == 1050  # one spike moves it little
    assert surges.typical_day([0] * 12 + [500, 700]) is None  # 2 days with use: too few
    assert surges.typical_day([]) is None


def test_a_surge_is_above_the_multiple_and_at_least_the_minimum() -> None:
    rule = {"typical": 1000, "multiple_tenths": 30, "min_tokens": 2000}
    assert surges.is_surge(today=3001, **rule)
    assert not surges.is_surge(today=3000, **rule)  # "exceeds": exactly 3× is not
    assert not surges.is_surge(today=1999, **rule | {"typical": 100})  # below the minimum
    assert surges.is_surge(today=1501, **rule | {"multiple_tenths": 15, "min_tokens": 0})


@pytest.mark.parametrize(
    ("value", "tenths"), [(3, 30), ("2.5", 25), (1.5, 15), (100, 1000), (" 4 ", 40)]
)
def test_multiples_are_kept_in_tenths(value: object, tenths: int) -> None:
    assert surge_settings.parse_multiple(value) == tenths
    assert Decimal(surge_settings.multiple_text(tenths)) == Decimal(str(value).strip())


@pytest.mark.parametrize("value", [1.4, 0, -3, 100.1, "2.55", "three", "nan", "inf", True])
def test_bad_multiples_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        surge_settings.parse_multiple(value)


def test_the_ratio_reads_as_people_say_it() -> None:
    surge = surges.Surge(1, "Front desk", dt.date(2026, 11, 15), 12_400, 3100, 9)
    assert surge.ratio == "4"
    assert surges.Surge(1, "x", dt.date(2026, 11, 15), 7750, 3100, 9).ratio == "2.5"
    assert surges.Surge(1, "x", dt.date(2026, 11, 15), 40_000, 1300, 9).ratio == "31"


# --- the job -------------------------------------------------------------------------


def test_one_email_per_assistant_and_day_however_often_the_job_runs(
    ctx: Context, clock: FixedClock
) -> None:
    account = new_account(ctx, email="shop@example.com")
    front = new_assistant(ctx, account, "Front desk")
    quiet = new_assistant(ctx, account, "Returns")
    history(ctx, clock, account, front, [0, 0, 3000, 3100, 0, 3200, 3100, 2900, 0, 3100, 3000])
    history(ctx, clock, account, quiet, [3000] * 10)
    today(ctx, clock, account, front, 12_400)
    today(ctx, clock, account, quiet, 4000)  # 1.3×: not a surge
    for _ in range(3):
        run_job(ctx)
    today(ctx, clock, account, front, 5000)  # more of the same day: still one email
    assert run_job(ctx) == {"accounts": 1, "queued": 0}
    [email] = surge_emails(ctx)
    assert email.dedupe_key == f"usage_surge:{front}:2026-11-15"
    assert email.to_address == "shop@example.com"
    figures = json.loads(email.context)
    assert (figures["assistant_name"], figures["today_tokens"], figures["typical_tokens"]) == (
        "Front desk",
        12_400,
        3100,  # the median of 3000 3100 3200 3100 2900 3100 3000
    )
    assert (figures["days_counted"], figures["ratio"], figures["multiple"]) == (7, "4", "3")
    # The next day is a day of its own.
    clock.set(clock.now() + dt.timedelta(days=1))
    today(ctx, clock, account, front, 20_000)
    assert run_job(ctx)["queued"] == 1
    assert [e.dedupe_key for e in surge_emails(ctx)][-1] == f"usage_surge:{front}:2026-11-16"


def test_two_workers_at_once_queue_one_email(ctx: Context, clock: FixedClock) -> None:
    account = new_account(ctx)
    front = new_assistant(ctx, account, "Front desk")
    history(ctx, clock, account, front, [1000] * 14)
    today(ctx, clock, account, front, 9000)
    start = threading.Barrier(2)
    results: list[object] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(run_job(ctx)["queued"])
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == [0, 1]  # type: ignore[type-var]
    assert len(surge_emails(ctx)) == 1


def test_no_alert_below_the_minimum(ctx: Context, clock: FixedClock) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Tiny")
    history(ctx, clock, account, bot, [200] * 10)
    today(ctx, clock, account, bot, 1500)  # 7.5× a tiny day, under the 2,000 minimum
    run_job(ctx)
    assert surge_emails(ctx) == []
    settings(ctx, account, surge_min_tokens=1000)
    run_job(ctx)
    assert len(surge_emails(ctx)) == 1


def test_no_alert_with_too_little_history(ctx: Context, clock: FixedClock) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "New")
    history(ctx, clock, account, bot, [1000, 0, 1000])  # 2 days with use
    today(ctx, clock, account, bot, 50_000)
    run_job(ctx)
    assert surge_emails(ctx) == []
    # A day older than the 14 does not count either.
    answered(ctx, account, bot, clock.now() - dt.timedelta(days=15), 1000)
    run_job(ctx)
    assert surge_emails(ctx) == []


def test_the_accounts_multiple_is_respected(ctx: Context, clock: FixedClock) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Front desk")
    history(ctx, clock, account, bot, [2000] * 5)
    settings(ctx, account, surge_multiple="5")
    today(ctx, clock, account, bot, 9000)  # 4.5×
    run_job(ctx)
    assert surge_emails(ctx) == []
    today(ctx, clock, account, bot, 1001)  # 10,001 > 5 × 2,000
    run_job(ctx)
    assert json.loads(surge_emails(ctx)[0].context)["multiple"] == "5"


def test_days_are_the_accounts_local_days(ctx: Context, clock: FixedClock) -> None:
    """In Auckland (UTC+13 in November) 12:00 UTC is already 01:00 of the next day."""
    account = new_account(ctx, timezone="Pacific/Auckland")
    bot = new_assistant(ctx, account, "Kiwi")
    history(ctx, clock, account, bot, [1000] * 5)
    today(ctx, clock, account, bot, 5000)  # 11:30 UTC: 00:30 on the 16th in Auckland
    run_job(ctx)
    [email] = surge_emails(ctx)
    assert email.dedupe_key.endswith(":2026-11-16")


def test_a_deleted_assistant_is_not_reported(ctx: Context, clock: FixedClock) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Gone")
    history(ctx, clock, account, bot, [1000] * 5)
    today(ctx, clock, account, bot, 9000)
    with ctx.db.uow() as uow:
        assistants.delete_assistant(
            uow.session, account_id=account, assistant_id=bot, now=clock.now()
        )
        uow.commit()
    run_job(ctx)
    assert surge_emails(ctx) == []


def test_the_email_names_the_figures_and_links_the_conversations(
    ctx: Context, clock: FixedClock
) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Front desk")
    history(ctx, clock, account, bot, [3100] * 6)
    today(ctx, clock, account, bot, 12_400)
    run_job(ctx)
    [message] = surge_emails(ctx)
    email = render(message.kind, json.loads(message.context), base_url=ctx.settings.base_url)
    link = f"{ctx.settings.base_url}/panel/assistants/{bot}/conversations"
    assert email.subject == "Front desk is using 4× its typical day"
    for part in (email.text, html.unescape(email.html)):
        assert "12,400 tokens today (2026-11-15)" in part
        assert "its typical day of 3,100 tokens" in part
        assert link in part


# --- where it shows and is set -------------------------------------------------------


def test_the_api_shows_and_changes_the_settings(alice: Caller) -> None:
    shown = alice.client.get("/api/v1/account").json()
    assert (shown["surge_multiple"], shown["surge_min_tokens"]) == (3, 2000)
    changed = alice.client.patch(
        "/api/v1/account", json={"surge_multiple": 2.5, "surge_min_tokens": 500}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["surge_multiple"], changed.json()["surge_min_tokens"]) == (2.5, 500)
    for bad in (
        {"surge_multiple": 1.4},
        {"surge_multiple": 101},
        {"surge_multiple": 2.55},
        {"surge_multiple": "3"},
        {"surge_min_tokens": -1},
        {"surge_min_tokens": 1.5},
    ):
        refused = alice.client.patch("/api/v1/account", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
    kept = alice.client.get("/api/v1/account").json()
    assert (kept["surge_multiple"], kept["surge_min_tokens"]) == (2.5, 500)


def test_the_cli_shows_and_changes_them(
    ctx: Context, clock: FixedClock, db_url: str, tmp_path: Path
) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Front desk")
    history(ctx, clock, account, bot, [1000] * 5)
    today(ctx, clock, account, bot, 4000)
    operator = Operator(
        {
            "CHATMETER_DATABASE_URL": db_url,
            "CHATMETER_ENV": "test",
            "CHATMETER_DATA_DIR": str(tmp_path / "var"),
            "CHATMETER_NOW": clock.now().isoformat(),
        }
    )
    shown = operator.json("accounts", "surge-alerts", "--account", str(account))
    assert (shown["surge_multiple"], shown["surge_min_tokens"]) == (3, 2000)
    assert [s["today_tokens"] for s in shown["surging_today"]] == [4000]
    changed = operator.json(
        "accounts", "surge-alerts", "--account", str(account), "--multiple", "5", "--minimum", "0"
    )
    assert (changed["surge_multiple"], changed["surging_today"]) == (5, [])
    assert "between 1.5 and 100" in operator.run(
        "accounts", "surge-alerts", "--account", str(account), "--multiple", "200", code=1
    )


# --- a spike in the last hour --------------------------------------------------------------


def spread_history(
    ctx: Context,
    clock: FixedClock,
    account: int,
    bot: int,
    days: int,
    hours: list[int],
    tokens: int,
) -> None:
    """On each of the ``days`` days before today, ``tokens`` at each of ``hours`` (UTC)."""
    midnight = clock.now().replace(hour=0, minute=0)
    for back in range(1, days + 1):
        for hour in hours:
            at = midnight - dt.timedelta(days=back) + dt.timedelta(hours=hour, minutes=20)
            answered(ctx, account, bot, at, tokens)


def test_a_spike_in_the_last_hour_is_told_before_the_day_surges(
    ctx: Context, clock: FixedClock
) -> None:
    """Three busy hours of 1,000 tokens a day; then 4,000 within the last hour: the day
    (4,000 of a typical 3,000) is not surging, the hour (4× its busiest) is."""
    account = new_account(ctx, email="shop@example.com")
    bot = new_assistant(ctx, account, "Front desk")
    spread_history(ctx, clock, account, bot, 7, [9, 12, 15], 1000)
    answered(ctx, account, bot, clock.now() - dt.timedelta(minutes=50), 2000)
    answered(ctx, account, bot, clock.now() - dt.timedelta(minutes=10), 2000)

    assert run_job(ctx)["queued"] == 1
    [message] = surge_emails(ctx)
    assert message.dedupe_key == f"usage_surge:{bot}:2026-11-15"  # one alert a day, either kind
    figures = json.loads(message.context)
    assert {k: figures[k] for k in ("window", "hour_tokens", "typical_hour_tokens", "ratio")} == {
        "window": "hour",
        "hour_tokens": 4000,
        "typical_hour_tokens": 1000,
        "ratio": "4",
    }
    assert (figures["today_tokens"], figures["typical_tokens"]) == (4000, 3000)
    email = render(message.kind, figures, base_url=ctx.settings.base_url)
    assert email.subject == "Front desk used 4× its busiest hour in the last hour"
    for part in (email.text, html.unescape(email.html)):
        assert "4,000 tokens in the last hour" in part
        assert "its busiest hour on a typical day (1,000 tokens)" in part
    # The day surging later sends nothing more: the customer knows already.
    answered(ctx, account, bot, clock.now(), 8000)
    assert run_job(ctx)["queued"] == 0


def test_no_spike_when_the_tokens_came_earlier_today_or_stay_below_the_minimum(
    ctx: Context, clock: FixedClock
) -> None:
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Front desk")
    spread_history(ctx, clock, account, bot, 7, [9, 12, 15], 1000)
    answered(ctx, account, bot, clock.now() - dt.timedelta(minutes=61), 1000)  # before the hour
    answered(ctx, account, bot, clock.now() - dt.timedelta(minutes=30), 1600)  # 1.6×, < 2,000
    assert run_job(ctx)["queued"] == 0
    with ctx.db.read() as session:
        found = surges.find(
            session, account=accounts.get_account(session, account_id=account), now=clock.now()
        )
    assert found == []
    settings(ctx, account, surge_min_tokens=1000, surge_multiple=Decimal("1.5"))
    with ctx.db.read() as session:
        [spike] = surges.find(
            session, account=accounts.get_account(session, account_id=account), now=clock.now()
        )
    # The hour only: 1,600 > 1.5 × 1,000; the day's 2,600 is below 1.5 × 3,000.
    assert (spike.window, spike.hour_tokens, spike.typical_hour_tokens) == ("hour", 1600, 1000)
    assert spike.ratio == "1.6"


def test_the_busiest_hour_of_a_day_adds_up_its_answers_within_one_clock_hour(
    ctx: Context, clock: FixedClock
) -> None:
    """Two answers of 600 in the 09:00 hour make a busiest hour of 1,200 (not 600);
    an answer at 10:05 is another hour."""
    account = new_account(ctx)
    bot = new_assistant(ctx, account, "Front desk")
    midnight = clock.now().replace(hour=0, minute=0)
    for back in range(1, 4):
        day = midnight - dt.timedelta(days=back)
        for at, tokens in (((9, 5), 600), ((9, 55), 600), ((10, 5), 900)):
            answered(ctx, account, bot, day + dt.timedelta(hours=at[0], minutes=at[1]), tokens)
    answered(ctx, account, bot, clock.now() - dt.timedelta(minutes=5), 3700)
    with ctx.db.read() as session:
        [spike] = surges.find(
            session, account=accounts.get_account(session, account_id=account), now=clock.now()
        )
    assert (spike.window, spike.typical_hour_tokens, spike.typical_tokens) == ("hour", 1200, 2100)
    assert spike.hour_tokens == 3700  # 3.1× 1,200; the day, 1.8× 2,100
