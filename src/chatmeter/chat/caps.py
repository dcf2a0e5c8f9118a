"""Per-assistant caps that keep visitors from draining a customer's shared balance.

- **Daily tokens**: what an assistant may reserve and spend in one day of its
  account's time zone (``Assistant.daily_token_cap``, 0 for none). A turn adds
  its reservation when it reserves and gives back what it did not use when it
  settles, both in the ledger's transaction, after the account's balance lock:
  concurrent turns of one assistant can never pass the cap together. At the cap
  the assistant goes quietly unavailable, as at zero tokens, until the next day.
- **Turns per conversation**: a conversation of ``turns_per_conversation``
  questions takes no more (``ConversationFull``); the visitor starts a new one.
  This bounds what one conversation's history can cost; it is checked when the
  turn starts, so turns racing in one conversation may pass it by their number.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.chat.models import AssistantDay, Conversation
from chatmeter.errors import ConversationFull, Unavailable


def local_day(now: dt.datetime, timezone: str) -> dt.date:
    return now.astimezone(ZoneInfo(timezone)).date()


def used_on(session: Session, *, assistant_id: int, day: dt.date) -> int:
    used = session.scalar(
        select(AssistantDay.tokens).where(
            AssistantDay.assistant_id == assistant_id, AssistantDay.day == day
        )
    )
    return used or 0


def under_daily_cap(session: Session, *, assistant: Assistant, day: dt.date) -> bool:
    """Whether the assistant may still answer today (it has not reached its cap)."""
    cap = assistant.daily_token_cap
    return not cap or used_on(session, assistant_id=assistant.id, day=day) < cap


def take(session: Session, *, assistant: Assistant, day: dt.date, tokens: int) -> None:
    """Count a reservation towards the day, or ``Unavailable`` if it would pass the cap.

    The caller holds the account's balance lock (``ledger.reserve`` took it).
    """
    used = used_on(session, assistant_id=assistant.id, day=day)
    if assistant.daily_token_cap and used + tokens > assistant.daily_token_cap:
        raise Unavailable()
    if used or _exists(session, assistant.id, day):
        _add(session, assistant.id, day, tokens)
    else:
        session.add(AssistantDay(assistant_id=assistant.id, day=day, tokens=tokens))
        session.flush()


def give_back(session: Session, *, assistant_id: int, day: dt.date, tokens: int) -> None:
    """Return what a turn reserved on ``day`` and did not use."""
    if tokens:
        _add(session, assistant_id, day, -tokens)


def check_turns(assistant: Assistant, conversation: Conversation | None) -> None:
    """``ConversationFull`` when the conversation has asked all the questions it may."""
    cap = assistant.turns_per_conversation
    if cap and conversation is not None and conversation.messages // 2 >= cap:
        raise ConversationFull(
            "This conversation has reached its length limit. Please start a new conversation."
        )


def _exists(session: Session, assistant_id: int, day: dt.date) -> bool:
    found = session.scalar(
        select(AssistantDay.assistant_id).where(
            AssistantDay.assistant_id == assistant_id, AssistantDay.day == day
        )
    )
    return found is not None


def _add(session: Session, assistant_id: int, day: dt.date, tokens: int) -> None:
    session.execute(
        update(AssistantDay)
        .where(AssistantDay.assistant_id == assistant_id, AssistantDay.day == day)
        .values(tokens=AssistantDay.tokens + tokens)
    )
