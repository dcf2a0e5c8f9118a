"""An account's runway forecast, read from its ledger.

The tokens spent on a local day (in the account's time zone) are the ``consumed``
of its ledger entries created that day, the same figure "used this month" adds up:
chat turns' settlements, the REST API's settled holds, and what a hold that expired
had used. ``billing.forecast`` does the arithmetic; this module only reads the days,
the available balance and the renewal, and says it all in words for the panel, the
email, the API and the CLI.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods
from chatmeter.billing.forecast import WINDOW_DAYS, DaySpend, Forecast, ForecastStatus, forecast
from chatmeter.billing.subscriptions import free_allowance
from chatmeter.config import Settings
from chatmeter.errors import NotFound
from chatmeter.formatting import long_date, plural, thousands
from chatmeter.ledger.models import Balance, LedgerEntry


def account_runway(
    session: Session, *, settings: Settings, account_id: int, now: dt.datetime
) -> Forecast:
    """The forecast of an account from its last ``WINDOW_DAYS`` local days of use."""
    account = session.get(Account, account_id)
    balance = session.get(Balance, account_id)
    if account is None or balance is None:
        raise NotFound("no such account", account_id=account_id)
    zone = ZoneInfo(account.timezone)
    today = now.astimezone(zone).date()
    opened = account.created_at.astimezone(zone).date()
    first = max(today - dt.timedelta(days=WINDOW_DAYS), opened)
    spent = spent_by_day(session, account_id=account_id, zone=zone, first=first, last=today)
    renews = periods.ends_at(periods.period_of(now, zone), zone).astimezone(zone).date()
    return forecast(
        [d for d in spent if d.day < today],
        today=today,
        spent_today=sum(d.tokens for d in spent if d.day == today),
        available=balance.available,
        renews_on=renews,
        package_tokens=settings.package_tokens,
        free_tokens=free_allowance(settings, account),
    )


def spent_by_day(
    session: Session, *, account_id: int, zone: ZoneInfo, first: dt.date, last: dt.date
) -> list[DaySpend]:
    """Tokens spent on each local day ``first``..``last`` (both included; zeros too)."""
    if last < first:
        return []
    count = (last - first).days + 1
    edges = [
        dt.datetime.combine(first + dt.timedelta(days=i), dt.time(), tzinfo=zone).astimezone(dt.UTC)
        for i in range(count + 1)
    ]
    index = case(*[(LedgerEntry.created_at < edge, i) for i, edge in enumerate(edges[1:])])
    rows = (
        select(index.label("day"), LedgerEntry.consumed)
        .where(
            LedgerEntry.account_id == account_id,
            LedgerEntry.consumed > 0,
            LedgerEntry.created_at >= edges[0],
            LedgerEntry.created_at < edges[-1],
        )
        .subquery()
    )
    totals = {
        int(day): int(tokens)
        for day, tokens in session.execute(
            select(rows.c.day, func.sum(rows.c.consumed)).group_by(rows.c.day)
        )
    }
    return [DaySpend(first + dt.timedelta(days=i), totals.get(i, 0)) for i in range(count)]


def runway_dict(result: Forecast) -> dict[str, Any]:
    """The forecast with the figures it read, as the API, the CLI and the panel show it."""
    return {
        "status": str(result.status),
        "today": result.today,
        "renews_on": result.renews_on,
        "available": result.available,
        "spent_today": result.spent_today,
        "history_days": result.history_days,
        "pace": result.pace,
        "by_weekday": dict(zip(WEEKDAYS, result.by_weekday, strict=True)),
        "runs_out_on": result.runs_out_on,
        "lasts_until_renewal": result.lasts_until_renewal,
        "tokens_until_renewal": result.tokens_until_renewal,
        "packages_to_last": result.packages_to_last,
        "month_tokens": result.month_tokens,
        "month_packages": result.month_packages,
        "package_tokens": result.package_tokens,
        "summary": summary(result),
        "daily": [{"day": d.day, "tokens": d.tokens} for d in result.history],
        "projection": [{"day": d.day, "tokens": d.tokens} for d in result.projection],
    }


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def summary(result: Forecast) -> str:
    """The forecast in one or two sentences."""
    if result.status is ForecastStatus.NOT_ENOUGH_HISTORY:
        return (
            f"Not enough history to forecast yet: {plural(result.history_days, 'day')} of use "
            f"so far, a forecast needs 7."
        )
    if result.status is ForecastStatus.NO_USAGE:
        return "No tokens used in the last weeks: at this pace your tokens last."
    pace = f"At your pace (about {thousands(result.pace)} tokens a day)"
    if result.runs_out_on is None:
        return f"{pace} your tokens last until the renewal on {long_date(result.renews_on)}."
    return f"{pace} you will run out on {long_date(result.runs_out_on)}. " + advice(result)


def advice(result: Forecast) -> str:
    """What to buy so that the tokens last (only when they would not)."""
    packages = plural(result.packages_to_last, "more package")
    verb = "lasts" if result.packages_to_last == 1 else "last"
    return f"{packages} {verb} until the {ordinal(result.renews_on.day)}."


def email_sentence(result: Forecast) -> str | None:
    """The low-balance email's forecast ("at your pace you will run out on 18 December;
    2 more packages last until the 1st"), or None without a run-out to announce."""
    if result.status is not ForecastStatus.OK or result.runs_out_on is None:
        return None
    day = result.runs_out_on
    return (
        f"At your pace (about {thousands(result.pace)} tokens a day) you will run out on "
        f"{day.day} {long_date(day).split(' ')[1]}; {advice(result)[:-1]}."
    )


def ordinal(day: int) -> str:
    """1 → "1st", 22 → "22nd", 13 → "13th"."""
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"
