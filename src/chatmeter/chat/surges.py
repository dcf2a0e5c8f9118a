"""Surge alerts: an assistant using far more tokens today than on its typical day, or in
the last hour than in its typical busiest hour (a spike, or abuse, caught within minutes).

The figures are the Usage page's and the conversations', so that a customer can check
them by hand:

- **Today**: the assistant's chat tokens (training context + response) of the
  answers stored so far on the account's local day.
- **Typical day**: the median of its daily tokens over the previous
  ``HISTORY_DAYS`` local days *on which it was used* (days without use are not
  counted: an assistant used on weekdays only has a weekday as its typical day).
  With fewer than ``MIN_DAYS_WITH_USE`` such days there is no typical day yet, and
  so no alert: too little history would make every busy day look like a surge.
- **Surging**: today > multiple × typical, and today ≥ the account's minimum.
- **Last hour**: the assistant's chat tokens of the answers stored in the 60 minutes
  before now.
- **Typical busiest hour**: for each of the same days with use, its busiest clock hour
  (the most tokens between two o'clocks, UTC's hours); the median of those, as for
  the typical day.
- **Spiking**: last hour > multiple × typical busiest hour, and last hour ≥ the
  minimum. A spike is told even when the day as a whole is not (yet) surging; when
  both hold, the day is told.

The ``usage-surge`` job (``jobs.registry``) queues one email (and one
``usage.surge`` webhook event) per assistant and local day: the outbox's dedupe key
``usage_surge:<assistant>:<day>`` is checked and written under the account's lock,
so repeated runs and concurrent workers send it once. The dashboard shows the same
surges, computed the same way.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.accounts.surge_settings import multiple_text
from chatmeter.assistants.models import Assistant
from chatmeter.chat import usage
from chatmeter.chat.models import Conversation
from chatmeter.ledger import service as ledger
from chatmeter.notifications.outbox import enqueue
from chatmeter.webhooks import events as webhook_events
from chatmeter.webhooks.events import EventType

HISTORY_DAYS = 14
DAY, HOUR = "day", "hour"  # what surged: the day so far, or the last 60 minutes
LAST_HOUR = dt.timedelta(hours=1)
MIN_DAYS_WITH_USE = 3
EMAIL_KIND = "usage_surge"
# A local day lasts at most 25 hours and starts at most 14 hours before UTC's: a
# conversation touched within this long before now may hold today's tokens anywhere.
_LOOKBACK = dt.timedelta(hours=40)


@dataclass(frozen=True)
class Surge:
    assistant_id: int
    assistant_name: str
    day: dt.date
    today_tokens: int
    typical_tokens: int
    days_counted: int
    # "day": today is surging (the last hour may be too); "hour": the last hour is
    # spiking while the day is not (yet).
    window: str = DAY
    hour_tokens: int = 0
    typical_hour_tokens: int = 0

    @property
    def ratio(self) -> str:
        """What surged ÷ its typical as people say it: "4", "2.5" (one decimal below 10)."""
        if self.window == HOUR:
            return _ratio_text(self.hour_tokens, self.typical_hour_tokens)
        return _ratio_text(self.today_tokens, self.typical_tokens)


def _ratio_text(value: int, typical: int) -> str:
    exact = Decimal(value) / Decimal(typical)
    places = Decimal("1") if exact >= 10 else Decimal("0.1")
    text = str(exact.quantize(places, rounding=ROUND_HALF_UP))
    return text.removesuffix(".0")


# --- pure rules ------------------------------------------------------------------


def typical_day(daily_tokens: list[int]) -> int | None:
    """The median of the days with use, rounded half up; None with too few of them."""
    used = sorted(tokens for tokens in daily_tokens if tokens > 0)
    if len(used) < MIN_DAYS_WITH_USE:
        return None
    middle = len(used) // 2
    if len(used) % 2:
        return used[middle]
    ratio = usage.rounded_ratio(used[middle - 1] + used[middle], 2)
    assert ratio is not None
    return ratio


def is_surge(*, today: int, typical: int, multiple_tenths: int, min_tokens: int) -> bool:
    """More than ``multiple`` times the typical day, and not below the minimum."""
    return today >= min_tokens and today * 10 > typical * multiple_tenths


# --- reading and acting ----------------------------------------------------------


def local_today(now: dt.datetime, zone: str) -> dt.date:
    return now.astimezone(ZoneInfo(zone)).date()


def find(session: Session, *, account: Account, now: dt.datetime) -> list[Surge]:
    """The account's live assistants surging today or spiking in the last hour, most
    tokens today first; a spike is told as such (``window`` "hour") while the day is not
    surging, else the day is."""
    today = local_today(now, account.timezone)
    first = today - dt.timedelta(days=HISTORY_DAYS)
    edges = usage.day_edges(first, today, account.timezone)
    cells = usage.tokens_by_day_and_assistant(session, account_id=account.id, edges=edges)
    if not any(index == HISTORY_DAYS for index, _ in cells):
        return []  # nothing used today: nothing can surge or spike (most dashboard loads)
    busiest = _busiest_hours(session, account.id, edges)
    last_hour = usage.tokens_by_assistant(
        session, account_id=account.id, since=now - LAST_HOUR, until=now + _TICK
    )
    live: dict[int, str] = {
        id_: name
        for id_, name in session.execute(
            select(Assistant.id, Assistant.name).where(
                Assistant.account_id == account.id, Assistant.deleted_at.is_(None)
            )
        )
    }
    rule = {
        "multiple_tenths": account.surge_multiple_tenths,
        "min_tokens": account.surge_min_tokens,
    }
    found = []
    for (index, assistant_id), tokens in cells.items():
        if index != HISTORY_DAYS or assistant_id not in live:
            continue
        history = [cells.get((i, assistant_id), 0) for i in range(HISTORY_DAYS)]
        typical = typical_day(history)
        if typical is None:
            continue
        typical_hour = typical_day([busiest.get((i, assistant_id), 0) for i in range(HISTORY_DAYS)])
        hour = last_hour.get(assistant_id, 0)
        surging = is_surge(today=tokens, typical=typical, **rule)
        spiking = typical_hour is not None and is_surge(today=hour, typical=typical_hour, **rule)
        if not surging and not spiking:
            continue
        found.append(
            Surge(
                assistant_id=assistant_id,
                assistant_name=live[assistant_id],
                day=today,
                today_tokens=tokens,
                typical_tokens=typical,
                days_counted=sum(1 for t in history if t > 0),
                window=DAY if surging else HOUR,
                hour_tokens=hour,
                typical_hour_tokens=typical_hour or 0,
            )
        )
    return sorted(found, key=lambda s: (-s.today_tokens, s.assistant_id))


# The answers stored up to now, included (``until`` is exclusive).
_TICK = dt.timedelta(microseconds=1)


def _busiest_hours(
    session: Session, account_id: int, edges: list[dt.datetime]
) -> dict[tuple[int, int], int]:
    """Each history day's busiest clock hour, by (day index, assistant): the most tokens
    of its answers between two o'clocks (an hour is the day's on which it starts)."""
    hours = usage.tokens_by_hour_and_assistant(
        session, account_id=account_id, since=edges[0], until=edges[HISTORY_DAYS]
    )
    starts = [edge.timestamp() for edge in edges]
    busiest: dict[tuple[int, int], int] = {}
    for (hour, assistant_id), tokens in hours.items():
        index = bisect.bisect_right(starts, hour * 3600) - 1
        if 0 <= index < HISTORY_DAYS:
            key = (index, assistant_id)
            busiest[key] = max(busiest.get(key, 0), tokens)
    return busiest


def accounts_used_today(session: Session, *, now: dt.datetime) -> list[int]:
    """Accounts with a conversation touched recently enough to hold today's tokens."""
    return list(
        session.scalars(
            select(Conversation.account_id)
            .where(Conversation.updated_at >= now - _LOOKBACK)
            .distinct()
            .order_by(Conversation.account_id)
        )
    )


def dedupe_key(surge: Surge) -> str:
    return f"{EMAIL_KIND}:{surge.assistant_id}:{surge.day.isoformat()}"


def email_context(account: Account, surge: Surge) -> dict[str, object]:
    return {
        "account_name": account.name,
        "assistant_id": surge.assistant_id,
        "assistant_name": surge.assistant_name,
        "day": surge.day.isoformat(),
        "today_tokens": surge.today_tokens,
        "typical_tokens": surge.typical_tokens,
        "days_counted": surge.days_counted,
        "history_days": HISTORY_DAYS,
        "ratio": surge.ratio,
        "multiple": multiple_text(account.surge_multiple_tenths),
        "min_tokens": account.surge_min_tokens,
        "window": surge.window,
        "hour_tokens": surge.hour_tokens,
        "typical_hour_tokens": surge.typical_hour_tokens,
    }


def event_data(account: Account, surge: Surge) -> dict[str, object]:
    """``usage.surge``'s figures: the email's, for a program."""
    return {
        "assistant": {"id": surge.assistant_id, "name": surge.assistant_name},
        "day": surge.day.isoformat(),
        "today_tokens": surge.today_tokens,
        "typical_tokens": surge.typical_tokens,
        "days_counted": surge.days_counted,
        "ratio": surge.ratio,
        "multiple": multiple_text(account.surge_multiple_tenths),
        "min_tokens": account.surge_min_tokens,
        "window": surge.window,
        "hour_tokens": surge.hour_tokens,
        "typical_hour_tokens": surge.typical_hour_tokens,
    }


def alert(session: Session, *, account_id: int, now: dt.datetime) -> int:
    """Queue the email of each of the account's surges not yet told; returns how many.

    The account's lock makes the outbox's check-then-insert safe against a second
    worker; the caller commits.
    """
    ledger.lock_balance(session, account_id=account_id)
    account = session.get(Account, account_id)
    assert account is not None
    queued = 0
    for surge in find(session, account=account, now=now):
        webhook_events.emit(
            session,
            account_id=account.id,
            type=EventType.USAGE_SURGE,
            key=f"{surge.assistant_id}:{surge.day.isoformat()}",
            data=event_data(account, surge),
            now=now,
        )
        queued += (
            enqueue(
                session,
                kind=EMAIL_KIND,
                dedupe_key=dedupe_key(surge),
                to=account.contact_email,
                context=email_context(account, surge),
                now=now,
                account_id=account.id,
            )
            is not None
        )
    return queued
