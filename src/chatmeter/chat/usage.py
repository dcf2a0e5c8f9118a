"""What an account's assistants used, by day in the account's time zone.

The usage page, its CSV and their tests read the figures from here. Each is
defined so that a customer can check it by hand, and every token in it is one
the ledger debited for a chat turn:

- **Training context** and **response** tokens of a day: the ``context_tokens``
  and ``generation_tokens`` of the answers stored that day. An answer is stored
  in the same transaction, at the same instant and with the same figures as the
  ledger's ``settle`` entry for its turn, so a day's tokens are that day's chat
  settlements. A turn that failed or was never settled stores no answer and
  spent nothing.
- **Messages** of a day: the visitors' questions and the assistants' answers
  stored that day (two a turn), as a conversation's message count has them.
- **Conversations** of a day: conversations *started* that day that got at least
  one answer. Later turns of a conversation add tokens to their own days.
- **Average tokens per conversation** over a range: the range's tokens divided
  by the conversations started in it, rounded half up; none when no
  conversation started. It is the two headline figures divided, so the page
  and the CSV (sum of ``total_tokens`` ÷ sum of ``conversations``) can be
  checked with a calculator.

Days are the account's local days: each one runs from local midnight to the
next, converted to UTC instants (23 or 25 hours long across a daylight-saving
change; in Auckland a day starts at 11:00 or 12:00 UTC of the day before). The
database compares stored UTC instants with those edges, which works the same
on SQLite and PostgreSQL without either's time zone functions. Days with no
usage are listed with zeros.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.chat.models import Conversation, Message
from chatmeter.errors import InvalidInput
from chatmeter.ledger.models import EntryKind, LedgerEntry

MAX_DAYS = 366  # one bucket edge per day goes into the query
SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class Figures:
    """Tokens by kind, conversations and messages: of a day, an assistant or a range."""

    context_tokens: int = 0
    generation_tokens: int = 0
    conversations: int = 0
    messages: int = 0

    @property
    def tokens(self) -> int:
        return self.context_tokens + self.generation_tokens

    @property
    def average_tokens(self) -> int | None:
        """Tokens ÷ conversations started, rounded half up; None without conversations."""
        return rounded_ratio(self.tokens, self.conversations)

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.context_tokens + other.context_tokens,
            self.generation_tokens + other.generation_tokens,
            self.conversations + other.conversations,
            self.messages + other.messages,
        )


@dataclass(frozen=True)
class Day:
    day: dt.date
    figures: Figures


@dataclass(frozen=True)
class AssistantFigures:
    assistant_id: int
    name: str
    deleted: bool
    figures: Figures


@dataclass(frozen=True)
class Usage:
    """A range of local days ``first_day``..``last_day`` (both included)."""

    first_day: dt.date
    last_day: dt.date
    timezone: str
    assistant_id: int | None
    days: list[Day]
    by_assistant: list[AssistantFigures]
    # Everything the ledger recorded as spent in the range, chat or not: tokens
    # settled through the REST API's holds belong to no conversation.
    ledger_tokens: int

    @property
    def total(self) -> Figures:
        return sum((d.figures for d in self.days), Figures())

    @property
    def outside_chat_tokens(self) -> int:
        """Spent through the API's holds rather than a conversation (all assistants only)."""
        return max(0, self.ledger_tokens - self.total.tokens) if self.assistant_id is None else 0


@dataclass(frozen=True)
class ConversationRow:
    id: int
    assistant_id: int
    assistant_name: str
    started_at: dt.datetime
    messages: int
    context_tokens: int
    generation_tokens: int

    @property
    def tokens(self) -> int:
        return self.context_tokens + self.generation_tokens


def rounded_ratio(total: int, count: int) -> int | None:
    """``total / count`` rounded half up, in integers (no float surprises at .5)."""
    if count <= 0:
        return None
    return (2 * total + count) // (2 * count)


def day_edges(first_day: dt.date, last_day: dt.date, zone: str) -> list[dt.datetime]:
    """The UTC instants at which each local day of the range starts, and the range ends.

    A midnight a daylight-saving jump skips takes the offset from before the
    jump (``fold=0``), which lands exactly on the jump: the first instant of
    that day. A repeated midnight starts its day at the first occurrence.
    """
    if last_day < first_day:
        raise InvalidInput("the range ends before it starts")
    count = (last_day - first_day).days + 1
    if count > MAX_DAYS:
        raise InvalidInput(f"a range is at most {MAX_DAYS} days")
    tz = ZoneInfo(zone)
    return [
        dt.datetime.combine(first_day + dt.timedelta(days=i), dt.time(), tzinfo=tz).astimezone(
            dt.UTC
        )
        for i in range(count + 1)
    ]


def usage(
    session: Session,
    *,
    account_id: int,
    first_day: dt.date,
    last_day: dt.date,
    timezone: str,
    assistant_id: int | None = None,
) -> Usage:
    """The account's usage over local days ``first_day``..``last_day``, optionally of one
    assistant (the caller checks that it is the account's)."""
    edges = day_edges(first_day, last_day, timezone)
    cells = _message_cells(session, account_id, assistant_id, edges)
    for key, started in _conversation_cells(session, account_id, assistant_id, edges).items():
        cells[key] = cells.get(key, Figures()) + started
    per_day: dict[int, Figures] = {}
    per_assistant: dict[int, Figures] = {}
    for (index, assistant), figures in cells.items():
        per_day[index] = per_day.get(index, Figures()) + figures
        per_assistant[assistant] = per_assistant.get(assistant, Figures()) + figures
    days = [
        Day(first_day + dt.timedelta(days=i), per_day.get(i, Figures()))
        for i in range(len(edges) - 1)
    ]
    return Usage(
        first_day=first_day,
        last_day=last_day,
        timezone=timezone,
        assistant_id=assistant_id,
        days=days,
        by_assistant=_by_assistant(session, account_id, per_assistant),
        ledger_tokens=_ledger_tokens(session, account_id, edges),
    )


def recent_conversations(
    session: Session,
    *,
    account_id: int,
    first_day: dt.date,
    last_day: dt.date,
    timezone: str,
    assistant_id: int | None = None,
    limit: int = 20,
) -> list[ConversationRow]:
    """The newest conversations started in the range, with their whole token figures."""
    edges = day_edges(first_day, last_day, timezone)
    query = (
        select(Conversation, Assistant.name)
        .join(Assistant, Assistant.id == Conversation.assistant_id)
        .where(
            Conversation.account_id == account_id,
            Conversation.messages > 0,
            Conversation.created_at >= edges[0],
            Conversation.created_at < edges[-1],
        )
        .order_by(Conversation.created_at.desc(), Conversation.id.desc())
        .limit(limit)
    )
    if assistant_id is not None:
        query = query.where(Conversation.assistant_id == assistant_id)
    return [
        ConversationRow(
            id=c.id,
            assistant_id=c.assistant_id,
            assistant_name=name,
            started_at=c.created_at,
            messages=c.messages,
            context_tokens=c.context_tokens,
            generation_tokens=c.generation_tokens,
        )
        for c, name in session.execute(query)
    ]


def assistant_names(session: Session, *, account_id: int) -> dict[int, tuple[str, bool]]:
    """Every assistant the account has had: id → (name, deleted). Deleted ones keep
    their usage."""
    rows = session.execute(
        select(Assistant.id, Assistant.name, Assistant.deleted_at)
        .where(Assistant.account_id == account_id)
        .order_by(Assistant.deleted_at.is_not(None), Assistant.id)
    )
    return {id_: (name, deleted_at is not None) for id_, name, deleted_at in rows}


def tokens_by_day_and_assistant(
    session: Session, *, account_id: int, edges: Sequence[dt.datetime]
) -> dict[tuple[int, int], int]:
    """Chat tokens by (index of the local day between ``edges``, assistant): the Usage
    page's per-assistant daily tokens, which surge alerts compare (``chat.surges``)."""
    return {
        key: figures.tokens
        for key, figures in _message_cells(session, account_id, None, edges).items()
    }


def tokens_by_hour_and_assistant(
    session: Session, *, account_id: int, since: dt.datetime, until: dt.datetime
) -> dict[tuple[int, int], int]:
    """Chat tokens by (UTC clock hour, as whole hours since 1970; assistant), of the answers
    stored from ``since`` until before ``until`` (surge alerts' busiest hours)."""
    hour = _hour_of(Message.created_at, session.get_bind().dialect.name).label("hour")
    rows = _answers_between(
        select(
            hour,
            Conversation.assistant_id.label("assistant_id"),
            (Message.context_tokens + Message.generation_tokens).label("tokens"),
        ),
        account_id,
        since,
        until,
    ).subquery()
    grouped = select(rows.c.hour, rows.c.assistant_id, func.sum(rows.c.tokens)).group_by(
        rows.c.hour, rows.c.assistant_id
    )
    return {
        (int(hour), int(assistant)): int(tokens)
        for hour, assistant, tokens in session.execute(grouped)
    }


def tokens_by_assistant(
    session: Session, *, account_id: int, since: dt.datetime, until: dt.datetime
) -> dict[int, int]:
    """Chat tokens by assistant of the answers stored from ``since`` until before ``until``."""
    rows = _answers_between(
        select(
            Conversation.assistant_id,
            func.sum(Message.context_tokens + Message.generation_tokens),
        ),
        account_id,
        since,
        until,
    ).group_by(Conversation.assistant_id)
    return {int(assistant): int(tokens or 0) for assistant, tokens in session.execute(rows)}


def _answers_between(
    query: SelectT, account_id: int, since: dt.datetime, until: dt.datetime
) -> SelectT:
    """``query`` over the account's messages stored from ``since`` until before ``until``,
    joined to their conversations (the index on account and ``updated_at`` skips those
    quiet since before ``since``)."""
    return query.join(Conversation, Conversation.id == Message.conversation_id).where(
        Conversation.account_id == account_id,
        Conversation.updated_at >= since,
        Message.created_at >= since,
        Message.created_at < until,
    )


def _hour_of(instant: SQLColumnExpression[dt.datetime], dialect: str) -> ColumnElement[int]:
    """The UTC clock hour of a stored instant, as whole hours since 1970."""
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", instant) / 3600), BigInteger)
    return cast(func.strftime("%s", instant), Integer) // 3600


# --- the queries -----------------------------------------------------------------


def day_index(
    instant: SQLColumnExpression[dt.datetime], edges: Sequence[dt.datetime]
) -> ColumnElement[int]:
    """Which day of the range a stored instant falls on (0 for the first), for instants
    already known to lie between the first and the last edge."""
    return case(*[(instant < edge, index) for index, edge in enumerate(edges[1:])])


def _message_cells(
    session: Session, account_id: int, assistant_id: int | None, edges: Sequence[dt.datetime]
) -> dict[tuple[int, int], Figures]:
    """Tokens and messages by (day, assistant)."""
    rows = (
        select(
            day_index(Message.created_at, edges).label("day"),
            Conversation.assistant_id.label("assistant_id"),
            Message.context_tokens,
            Message.generation_tokens,
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.account_id == account_id,
            # A conversation's last message is its ``updated_at``: one that went quiet
            # before the range has none in it (the index on account and ``updated_at``
            # skips it without reading its messages).
            Conversation.updated_at >= edges[0],
            Message.created_at >= edges[0],
            Message.created_at < edges[-1],
        )
    )
    rows = _of_assistant(rows, assistant_id)
    # Grouped outside: PostgreSQL cannot tell that a CASE with bound edges in GROUP BY
    # is the one in SELECT, as each is sent with parameters of its own.
    cells = rows.subquery()
    grouped = select(
        cells.c.day,
        cells.c.assistant_id,
        func.sum(cells.c.context_tokens),
        func.sum(cells.c.generation_tokens),
        func.count(),
    ).group_by(cells.c.day, cells.c.assistant_id)
    return {
        (int(day), int(assistant)): Figures(int(context), int(generation), 0, int(messages))
        for day, assistant, context, generation, messages in session.execute(grouped)
    }


def _conversation_cells(
    session: Session, account_id: int, assistant_id: int | None, edges: Sequence[dt.datetime]
) -> dict[tuple[int, int], Figures]:
    """Conversations started, by (day, assistant)."""
    rows = select(
        day_index(Conversation.created_at, edges).label("day"),
        Conversation.assistant_id.label("assistant_id"),
    ).where(
        Conversation.account_id == account_id,
        Conversation.messages > 0,  # a first turn still running, or refused, is not one yet
        Conversation.created_at >= edges[0],
        Conversation.created_at < edges[-1],
    )
    cells = _of_assistant(rows, assistant_id).subquery()
    grouped = select(cells.c.day, cells.c.assistant_id, func.count()).group_by(
        cells.c.day, cells.c.assistant_id
    )
    return {
        (int(day), int(assistant)): Figures(conversations=int(count))
        for day, assistant, count in session.execute(grouped)
    }


def _of_assistant(query: SelectT, assistant_id: int | None) -> SelectT:
    return query if assistant_id is None else query.where(Conversation.assistant_id == assistant_id)


def _by_assistant(
    session: Session, account_id: int, figures: dict[int, Figures]
) -> list[AssistantFigures]:
    """Each assistant with usage in the range, most tokens first."""
    names = assistant_names(session, account_id=account_id)
    rows = []
    for id_, of_assistant in figures.items():
        name, deleted = names[id_]
        rows.append(AssistantFigures(id_, name, deleted, of_assistant))
    return sorted(rows, key=lambda row: (-row.figures.tokens, row.name.lower(), row.assistant_id))


def _ledger_tokens(session: Session, account_id: int, edges: Sequence[dt.datetime]) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.consumed), 0)).where(
            LedgerEntry.account_id == account_id,
            LedgerEntry.kind == EntryKind.SETTLE,
            LedgerEntry.created_at >= edges[0],
            LedgerEntry.created_at < edges[-1],
        )
    )
    return int(total or 0)
