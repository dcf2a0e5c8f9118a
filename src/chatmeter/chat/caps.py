"""Per-assistant caps that keep visitors from draining a customer's shared balance.

- **Daily tokens**: what an assistant may reserve and spend in one day of its
  account's time zone (``Assistant.daily_token_cap``, 0 for none). A turn adds
  its reservation when it reserves and gives back what it did not use when it
  settles, both in the ledger's transaction, after the account's balance lock:
  concurrent turns of one assistant can never pass the cap together. At the cap
  the assistant goes quietly unavailable, as at zero tokens, until the next day.
- **Monthly tokens**: the same for a calendar month of the account's time zone
  (``Assistant.monthly_token_cap``, 0 for none), so one assistant cannot starve the
  others of the shared balance. It counts the month's ``assistant_days`` summed in
  SQL, only when a cap is set: turns of uncapped assistants pay nothing for it. At
  the cap the assistant is away until the 1st, or until the owner raises the cap.
  Both caps are read again under the lock, so a cap changed while a turn was being
  prepared is the one it meets. When a cap stops an assistant (a turn refused by it,
  or a turn's use reaching it) the customer's webhooks hear ``assistant.cap_reached``
  once per cap and day or month.
- **Turns per conversation**: a conversation of ``turns_per_conversation``
  questions takes no more (``ConversationFull``); the visitor starts a new one.
  This bounds what one conversation's history can cost; it is checked when the
  turn starts, so turns racing in one conversation may pass it by their number.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.assistants.models import Assistant
from chatmeter.chat.models import AssistantDay, Conversation
from chatmeter.db import Database
from chatmeter.errors import ConversationFull, Unavailable
from chatmeter.ledger import service as ledger
from chatmeter.ledger.verify import AccountReport
from chatmeter.ledger.verify import verify as ledger_verify
from chatmeter.webhooks import events as webhook_events
from chatmeter.webhooks.events import EventType


def local_day(now: dt.datetime, timezone: str) -> dt.date:
    return now.astimezone(ZoneInfo(timezone)).date()


def used_on(session: Session, *, assistant_id: int, day: dt.date) -> int:
    used = session.scalar(
        select(AssistantDay.tokens).where(
            AssistantDay.assistant_id == assistant_id, AssistantDay.day == day
        )
    )
    return used or 0


def month_of(day: dt.date) -> tuple[dt.date, dt.date]:
    """The first day of ``day``'s month and the first day of the next."""
    first = day.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following


def used_in_month(session: Session, *, assistant_id: int, day: dt.date) -> int:
    """What the assistant reserved and spent in ``day``'s month (its days, summed in SQL)."""
    first, following = month_of(day)
    used = session.scalar(
        select(func.sum(AssistantDay.tokens)).where(
            AssistantDay.assistant_id == assistant_id,
            AssistantDay.day >= first,
            AssistantDay.day < following,
        )
    )
    return int(used or 0)


def under_monthly_cap(session: Session, *, assistant: Assistant, day: dt.date) -> bool:
    """Whether the assistant may still answer this month (it has not reached its cap)."""
    cap = assistant.monthly_token_cap
    return not cap or used_in_month(session, assistant_id=assistant.id, day=day) < cap


def under_daily_cap(session: Session, *, assistant: Assistant, day: dt.date) -> bool:
    """Whether the assistant may still answer today (it has not reached its cap)."""
    cap = assistant.daily_token_cap
    return not cap or used_on(session, assistant_id=assistant.id, day=day) < cap


class CapReached(Unavailable):
    """A turn would pass the assistant's daily or monthly cap (visitors hear "unavailable")."""

    def __init__(self, *, cap: str, limit: int, used: int, period: str) -> None:
        super().__init__()
        self.cap, self.limit, self.used, self.period = cap, limit, used, period


def take(session: Session, *, assistant: Assistant, day: dt.date, tokens: int) -> None:
    """Count a reservation towards the day, or ``CapReached`` if it would pass the
    assistant's daily or monthly cap.

    The caller holds the account's balance lock (``ledger.reserve`` took it), so the
    caps read here are the ones in force: an owner changing them takes the same lock.
    """
    # The caps and the day's row in one statement: this runs under the balance lock.
    daily_cap, monthly_cap, today = session.execute(
        select(Assistant.daily_token_cap, Assistant.monthly_token_cap, AssistantDay.tokens)
        .outerjoin(
            AssistantDay, (AssistantDay.assistant_id == Assistant.id) & (AssistantDay.day == day)
        )
        .where(Assistant.id == assistant.id)
    ).one()
    used = today or 0
    if daily_cap and used + tokens > daily_cap:
        raise CapReached(cap="daily", limit=daily_cap, used=used, period=day.isoformat())
    if monthly_cap:
        month = used_in_month(session, assistant_id=assistant.id, day=day)
        if month + tokens > monthly_cap:
            raise CapReached(cap="monthly", limit=monthly_cap, used=month, period=f"{day:%Y-%m}")
    if today is not None:
        _add(session, assistant.id, day, tokens)
    else:
        session.add(AssistantDay(assistant_id=assistant.id, day=day, tokens=tokens))
        session.flush()


def give_back(session: Session, *, assistant_id: int, day: dt.date, tokens: int) -> None:
    """Return what a turn reserved on ``day`` and did not use."""
    if tokens:
        _add(session, assistant_id, day, -tokens)


def reached_after_settle(session: Session, *, assistant_id: int, day: dt.date) -> CapReached | None:
    """The cap a settled turn's use now meets, if any: the assistant is away from now on.

    Called under the balance lock by turns of capped assistants only.
    """
    daily_cap, monthly_cap = session.execute(
        select(Assistant.daily_token_cap, Assistant.monthly_token_cap).where(
            Assistant.id == assistant_id
        )
    ).one()
    if daily_cap:
        used = used_on(session, assistant_id=assistant_id, day=day)
        if used >= daily_cap:
            return CapReached(cap="daily", limit=daily_cap, used=used, period=day.isoformat())
    if monthly_cap:
        month = used_in_month(session, assistant_id=assistant_id, day=day)
        if month >= monthly_cap:
            return CapReached(cap="monthly", limit=monthly_cap, used=month, period=f"{day:%Y-%m}")
    return None


def tell_reached(
    session: Session, *, account_id: int, assistant_id: int, reached: CapReached, now: dt.datetime
) -> None:
    """``assistant.cap_reached`` for the customer's webhooks: once per assistant, cap and
    day (daily) or month (monthly). The caller holds the account's balance lock."""
    name = session.scalar(select(Assistant.name).where(Assistant.id == assistant_id))
    webhook_events.emit(
        session,
        account_id=account_id,
        type=EventType.ASSISTANT_CAP_REACHED,
        key=f"{assistant_id}:{reached.cap}:{reached.period}",
        data={
            "assistant": {"id": assistant_id, "name": name},
            "cap": reached.cap,
            "cap_tokens": reached.limit,
            "used_tokens": reached.used,
            "period": reached.period,
        },
        now=now,
    )


def report_refusal(
    db: Database, *, account_id: int, assistant_id: int, reached: CapReached, now: dt.datetime
) -> None:
    """A turn was refused by a cap: tell the webhooks, in a transaction of its own (the
    turn's rolled back). Cheap once told: one read of the event's key, no lock."""
    key = f"{EventType.ASSISTANT_CAP_REACHED}:{assistant_id}:{reached.cap}:{reached.period}"
    with db.read() as session:
        if webhook_events.recorded(session, key):
            return
    with db.uow() as uow:
        ledger.lock_balance(uow.session, account_id=account_id)
        tell_reached(
            uow.session, account_id=account_id, assistant_id=assistant_id, reached=reached, now=now
        )
        uow.commit()


def check_turns(assistant: Assistant, conversation: Conversation | None) -> None:
    """``ConversationFull`` when the conversation has asked all the questions it may."""
    cap = assistant.turns_per_conversation
    if cap and conversation is not None and conversation.messages // 2 >= cap:
        raise ConversationFull(
            "This conversation has reached its length limit. Please start a new conversation."
        )


def _add(session: Session, assistant_id: int, day: dt.date, tokens: int) -> None:
    session.execute(
        update(AssistantDay)
        .where(AssistantDay.assistant_id == assistant_id, AssistantDay.day == day)
        .values(tokens=AssistantDay.tokens + tokens)
    )


# --- ``chatmeter ledger verify``: the ledger's checks and the monthly caps ------------------


def verify(
    session: Session, *, now: dt.datetime, account_id: int | None = None
) -> list[AccountReport]:
    """The ledger's reports, each with its assistants' monthly caps checked too.

    No assistant's current month (of the account's time zone) may hold more reserved
    and spent tokens than its monthly cap allows: the cap in force, or, if the owner
    lowered it this month below what the month had already used, that use
    (``Assistant.monthly_cap_used_then``, read under the balance lock as the cap
    changed). Turns are checked against the cap under that lock, so a month above it
    means a reservation passed a cap it should have met. Past months are not checked:
    their caps are not kept.
    """
    reports = ledger_verify(session, account_id=account_id)
    for report in reports:
        report.problems += _monthly_caps(session, report.account_id, now)
    return reports


def _monthly_caps(session: Session, account_id: int, now: dt.datetime) -> list[str]:
    """Each capped assistant whose month holds more than its cap allows."""
    capped = list(
        session.scalars(
            select(Assistant)
            .where(Assistant.account_id == account_id, Assistant.monthly_token_cap > 0)
            .order_by(Assistant.id)
        )
    )
    if not capped:
        return []
    account = session.get(Account, account_id)
    today = local_day(now, account.timezone if account else "UTC")
    problems = []
    for assistant in capped:
        used = used_in_month(session, assistant_id=assistant.id, day=today)
        allowed = _allowed(assistant, today)
        if used > allowed:
            problems.append(
                f"assistant {assistant.id}: {used} tokens reserved and spent in "
                f"{today:%Y-%m}, above the {allowed} its monthly cap allows"
            )
    return problems


def _allowed(assistant: Assistant, today: dt.date) -> int:
    """The cap in force, or the month's use when a cap was set below it this month."""
    set_on = assistant.monthly_cap_set_on
    if set_on is not None and month_of(set_on) == month_of(today):
        return max(assistant.monthly_token_cap, assistant.monthly_cap_used_then)
    return assistant.monthly_token_cap
