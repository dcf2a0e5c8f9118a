"""The usage figures: real turns with the bundled model, grouped into the account's local
days, and every token of them one the ledger settled for a chat turn.

The oracle for "which day" is Python's own ``astimezone`` on each ledger entry;
the code under test buckets in the database with UTC day edges.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.chat import usage
from chatmeter.chat.admission import start_turn
from chatmeter.chat.models import Conversation, Message
from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.errors import InvalidInput
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance, EntryKind, LedgerEntry
from tests.support.accounts import add_tokens, new_account

QUESTION = "When are you open on Saturdays?"
FOLLOW_UP = "And on Sundays?"
_visitors = itertools.count()


@dataclass(frozen=True)
class Customer:
    account_id: int
    timezone: str
    keys: dict[str, str]  # assistant name → public key
    ids: dict[str, int]  # assistant name → id


def customer(
    ctx: Context,
    *,
    email: str = "owner@example.com",
    timezone: str = "UTC",
    names: tuple[str, ...] = ("Help Center",),
) -> Customer:
    """An account in ``timezone`` with untrained assistants (short answers) and tokens."""
    account_id = new_account(ctx, email=email, timezone=timezone)
    keys, ids = {}, {}
    with ctx.db.uow() as uow:
        for name in names:
            assistant = assistants.create_assistant(
                uow.session,
                account_id=account_id,
                fields=AssistantFields(name=name, max_tokens=16, temperature=0),
                now=ctx.clock.now(),
            )
            keys[name], ids[name] = assistant.public_key, assistant.id
        uow.commit()
    add_tokens(ctx, account_id, 100_000, key=f"usage:{email}")
    return Customer(account_id, timezone, keys, ids)


def chat(
    ctx: Context,
    clock: FixedClock,
    public_key: str,
    at: dt.datetime,
    *,
    conversation: str | None = None,
    message: str = QUESTION,
) -> str:
    """One real turn at ``at`` (UTC); returns the conversation's public id."""
    clock.set(at)
    turn = start_turn(
        ctx,
        public_key=public_key,
        message=message,
        conversation_id=conversation,
        visitor=f"visitor-{next(_visitors)}",
    )
    return str(turn.run()["conversation_id"])


def settlements(ctx: Context, account_id: int) -> list[LedgerEntry]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.account_id == account_id, LedgerEntry.kind == EntryKind.SETTLE
                )
            )
        )


def chat_holds(ctx: Context) -> set[int]:
    """The holds that chat turns settled (each answer names its hold)."""
    with ctx.db.read() as session:
        return {h for h in session.scalars(select(Message.hold_id)) if h is not None}


def by_local_day(entries: list[LedgerEntry], zone: str) -> dict[dt.date, tuple[int, int]]:
    """The oracle: each settlement's (context, generation) on its local day."""
    days: dict[dt.date, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for entry in entries:
        day = entry.created_at.astimezone(ZoneInfo(zone)).date()
        context, generation = days[day]
        days[day] = (context + entry.context_tokens, generation + entry.generation_tokens)
    return dict(days)


def report(
    ctx: Context,
    who: Customer,
    first: dt.date,
    last: dt.date,
    assistant_id: int | None = None,
) -> usage.Usage:
    with ctx.db.read() as session:
        return usage.usage(
            session,
            account_id=who.account_id,
            first_day=first,
            last_day=last,
            timezone=who.timezone,
            assistant_id=assistant_id,
        )


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


# --- local days ---------------------------------------------------------------------

# (zone, UTC instants of turns, the local day each one must count on)
LOCAL_DAYS = {
    "london-spring-forward": (
        "Europe/London",
        ["2026-03-28T23:30", "2026-03-29T00:30", "2026-03-29T22:30", "2026-03-29T23:30"],
        # 23:30 UTC on the 29th is 00:30 BST on the 30th.
        ["2026-03-28", "2026-03-29", "2026-03-29", "2026-03-30"],
    ),
    "london-fall-back": (
        "Europe/London",
        ["2026-10-24T22:30", "2026-10-24T23:30", "2026-10-25T23:30"],
        # The 25th has 25 hours: 23:00 UTC on the 24th to 00:00 UTC on the 26th.
        ["2026-10-24", "2026-10-25", "2026-10-25"],
    ),
    "auckland": (
        "Pacific/Auckland",
        ["2026-04-04T10:30", "2026-04-04T11:30", "2026-04-05T11:30", "2026-11-14T11:30"],
        # NZDT (+13) until 5 April 03:00, then NZST (+12): 11:30 UTC on 5 April is still
        # the 5th (23:30), and in November 11:30 UTC on the 14th is already the 15th.
        ["2026-04-04", "2026-04-05", "2026-04-05", "2026-11-15"],
    ),
}


@pytest.mark.model
@pytest.mark.parametrize("case", LOCAL_DAYS.values(), ids=list(LOCAL_DAYS))
def test_tokens_count_on_the_local_day_of_the_account(
    ctx: Context, clock: FixedClock, case: tuple[str, list[str], list[str]]
) -> None:
    zone, instants, expected = case
    clock.set(utc(instants[0]) - dt.timedelta(hours=1))
    who = customer(ctx, timezone=zone)
    for instant in instants:
        chat(ctx, clock, who.keys["Help Center"], utc(instant))

    days = [dt.date.fromisoformat(d) for d in expected]
    first, last = min(days) - dt.timedelta(days=1), max(days) + dt.timedelta(days=1)
    got = report(ctx, who, first, last)

    turns = Counter(days)
    oracle = by_local_day(settlements(ctx, who.account_id), zone)
    assert sorted(oracle) == sorted(turns), "the oracle agrees with the expected days"
    assert [d.day for d in got.days] == [
        first + dt.timedelta(days=i) for i in range((last - first).days + 1)
    ]
    for day in got.days:
        figures = day.figures
        assert (figures.context_tokens, figures.generation_tokens) == oracle.get(day.day, (0, 0))
        assert figures.conversations == turns[day.day]  # each turn started one
        assert figures.messages == 2 * turns[day.day]
    assert got.total.conversations == len(instants)


def test_day_edges_follow_daylight_saving_and_refuse_bad_ranges() -> None:
    def hours(day: str, zone: str) -> float:
        start, end = usage.day_edges(dt.date.fromisoformat(day), dt.date.fromisoformat(day), zone)
        return (end - start).total_seconds() / 3600

    assert hours("2026-03-29", "Europe/London") == 23
    assert hours("2026-10-25", "Europe/London") == 25
    assert hours("2026-04-05", "Pacific/Auckland") == 25
    assert hours("2026-09-27", "Pacific/Auckland") == 23
    assert hours("2026-11-15", "Asia/Kathmandu") == 24
    # Santiago skips midnight when its clocks go forward: the day starts at the jump.
    (start, _end) = usage.day_edges(dt.date(2026, 9, 6), dt.date(2026, 9, 6), "America/Santiago")
    assert start == utc("2026-09-06T04:00")
    assert usage.day_edges(dt.date(2026, 11, 15), dt.date(2026, 11, 15), "Pacific/Auckland") == [
        utc("2026-11-14T11:00"),
        utc("2026-11-15T11:00"),
    ]

    with pytest.raises(InvalidInput, match="ends before it starts"):
        usage.day_edges(dt.date(2026, 11, 2), dt.date(2026, 11, 1), "UTC")
    with pytest.raises(InvalidInput, match="at most 366 days"):
        usage.day_edges(dt.date(2025, 1, 1), dt.date(2026, 1, 2), "UTC")
    assert len(usage.day_edges(dt.date(2025, 1, 1), dt.date(2026, 1, 1), "UTC")) == 367


@pytest.mark.model
def test_a_conversation_counts_on_the_day_it_started_and_its_turns_on_theirs(
    ctx: Context, clock: FixedClock
) -> None:
    clock.set(utc("2026-11-14T20:00"))
    who = customer(ctx, timezone="Europe/Berlin")
    key = who.keys["Help Center"]
    started = chat(ctx, clock, key, utc("2026-11-14T22:50"))  # 23:50 in Berlin
    chat(ctx, clock, key, utc("2026-11-14T23:10"), conversation=started, message=FOLLOW_UP)

    got = report(ctx, who, dt.date(2026, 11, 14), dt.date(2026, 11, 15))
    first, second = (d.figures for d in got.days)
    oracle = by_local_day(settlements(ctx, who.account_id), who.timezone)
    assert (first.conversations, first.messages) == (1, 2)
    assert (second.conversations, second.messages) == (0, 2)
    assert (first.context_tokens, first.generation_tokens) == oracle[dt.date(2026, 11, 14)]
    assert (second.context_tokens, second.generation_tokens) == oracle[dt.date(2026, 11, 15)]
    # One conversation: its average is everything it used.
    assert got.total.average_tokens == got.total.tokens == first.tokens + second.tokens

    with ctx.db.read() as session:
        (row,) = usage.recent_conversations(
            session,
            account_id=who.account_id,
            first_day=dt.date(2026, 11, 14),
            last_day=dt.date(2026, 11, 15),
            timezone=who.timezone,
        )
    assert (row.messages, row.tokens) == (4, got.total.tokens)
    assert row.assistant_name == "Help Center"


# --- agreement with the ledger ---------------------------------------------------------


@pytest.mark.model
def test_usage_is_exactly_what_the_ledger_settled_for_chat_turns(
    ctx: Context, clock: FixedClock
) -> None:
    """Totals, per day and per kind, equal the settle entries of the turns' holds; a turn
    still running and a hold settled through the API are not chat usage."""
    clock.set(utc("2026-11-10T08:00"))
    who = customer(ctx)
    key = who.keys["Help Center"]
    with ctx.db.read() as session:
        before = session.get(Balance, who.account_id)
        assert before is not None
    one = chat(ctx, clock, key, utc("2026-11-10T09:00"))
    chat(ctx, clock, key, utc("2026-11-10T09:05"), conversation=one, message=FOLLOW_UP)
    chat(ctx, clock, key, utc("2026-11-12T15:00"))
    chat(ctx, clock, key, utc("2026-11-14T18:30"))
    # Reserved but not answered yet: holds tokens, spends none, starts no conversation.
    clock.set(utc("2026-11-14T19:00"))
    running = start_turn(
        ctx, public_key=key, message=QUESTION, conversation_id=None, visitor="still-typing"
    )
    # Tokens spent through the REST API's holds, outside any conversation.
    with ctx.db.uow() as uow:
        hold = ledger.reserve(
            uow.session,
            account_id=who.account_id,
            tokens=500,
            key="api:outside",
            ttl_seconds=60,
            now=clock.now(),
        )
        ledger.settle(
            uow.session,
            account_id=who.account_id,
            hold_id=hold.id,
            context=120,
            generation=80,
            now=clock.now(),
        )
        uow.commit()

    got = report(ctx, who, dt.date(2026, 11, 9), dt.date(2026, 11, 15))

    entries = settlements(ctx, who.account_id)
    chat_entries = [e for e in entries if e.hold_id in chat_holds(ctx)]
    assert len(chat_entries) == 4
    assert got.total.context_tokens == sum(e.context_tokens for e in chat_entries)
    assert got.total.generation_tokens == sum(e.generation_tokens for e in chat_entries)
    assert got.total.tokens == sum(e.consumed for e in chat_entries) > 0
    assert (got.total.conversations, got.total.messages) == (3, 8)
    oracle = by_local_day(chat_entries, "UTC")
    for day in got.days:
        figures = day.figures
        assert (figures.context_tokens, figures.generation_tokens) == oracle.get(day.day, (0, 0))
    assert got.ledger_tokens == sum(e.consumed for e in entries) == got.total.tokens + 200
    assert got.outside_chat_tokens == 200
    assert got.total.average_tokens == usage.rounded_ratio(got.total.tokens, 3)

    # What left the balance is chat usage plus the API's hold, once the running turn ends.
    running.run()
    with ctx.db.read() as session:
        after = session.get(Balance, who.account_id)
        assert after is not None and after.reserved == 0
    later = report(ctx, who, dt.date(2026, 11, 9), dt.date(2026, 11, 15))
    assert before.balance - after.balance == later.total.tokens + 200 == later.ledger_tokens
    assert later.total.conversations == 4


# --- filters and other accounts --------------------------------------------------------


@pytest.mark.model
def test_one_assistant_or_all_and_never_another_accounts(ctx: Context, clock: FixedClock) -> None:
    clock.set(utc("2026-11-15T08:00"))
    shop = customer(ctx, email="shop@example.com", names=("Help Center", "Wholesale"))
    other = customer(ctx, email="other@example.com", names=("Rival",))
    chat(ctx, clock, shop.keys["Help Center"], utc("2026-11-15T09:00"))
    chat(ctx, clock, shop.keys["Help Center"], utc("2026-11-15T09:30"))
    chat(ctx, clock, shop.keys["Wholesale"], utc("2026-11-15T10:00"))
    chat(ctx, clock, other.keys["Rival"], utc("2026-11-15T10:30"))
    day = dt.date(2026, 11, 15)

    with ctx.db.read() as session:
        answers = list(session.scalars(select(Message).where(Message.role == "assistant")))
        conversation_of = dict(
            session.execute(select(Conversation.id, Conversation.assistant_id)).all()
        )
    spent: dict[int, int] = defaultdict(int)
    for answer in answers:
        spent[conversation_of[answer.conversation_id]] += (
            answer.context_tokens + answer.generation_tokens
        )
    shop_entries = settlements(ctx, shop.account_id)

    everything = report(ctx, shop, day, day)
    assert everything.total.tokens == sum(e.consumed for e in shop_entries)
    assert everything.total.tokens == spent[shop.ids["Help Center"]] + spent[shop.ids["Wholesale"]]
    assert everything.total.conversations == 3
    assert [
        (a.name, a.figures.tokens, a.figures.conversations) for a in everything.by_assistant
    ] == sorted(
        [
            ("Help Center", spent[shop.ids["Help Center"]], 2),
            ("Wholesale", spent[shop.ids["Wholesale"]], 1),
        ],
        key=lambda row: -row[1],
    )

    helper = report(ctx, shop, day, day, assistant_id=shop.ids["Help Center"])
    assert (helper.total.tokens, helper.total.conversations) == (spent[shop.ids["Help Center"]], 2)
    assert helper.outside_chat_tokens == 0

    # Asked with another account's assistant, the query finds nothing of it.
    stolen = report(ctx, shop, day, day, assistant_id=other.ids["Rival"])
    assert stolen.total == usage.Figures()
    with ctx.db.read() as session:
        recent = usage.recent_conversations(
            session, account_id=shop.account_id, first_day=day, last_day=day, timezone="UTC"
        )
        names = usage.assistant_names(session, account_id=shop.account_id)
    assert {row.assistant_name for row in recent} == {"Help Center", "Wholesale"}
    assert len(recent) == 3
    assert set(names) == {shop.ids["Help Center"], shop.ids["Wholesale"]}
    theirs = report(ctx, other, day, day)
    assert theirs.total.tokens == spent[other.ids["Rival"]] > 0


# --- zeros and the average ----------------------------------------------------------------


@pytest.mark.model
def test_days_without_usage_are_listed_with_zeros(ctx: Context, clock: FixedClock) -> None:
    clock.set(utc("2026-11-15T08:00"))
    who = customer(ctx)
    chat(ctx, clock, who.keys["Help Center"], utc("2026-11-13T12:00"))

    got = report(ctx, who, dt.date(2026, 11, 9), dt.date(2026, 11, 15))

    assert [d.day.day for d in got.days] == [9, 10, 11, 12, 13, 14, 15]
    assert [d.figures == usage.Figures() for d in got.days] == [
        True,
        True,
        True,
        True,
        False,
        True,
        True,
    ]
    year = report(ctx, who, dt.date(2025, 11, 14), dt.date(2026, 11, 14))  # the longest
    assert len(year.days) == usage.MAX_DAYS and year.total == got.total
    empty = report(ctx, who, dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    assert len(empty.days) == 31 and empty.total == usage.Figures()
    assert empty.total.average_tokens is None


def test_the_average_is_tokens_over_conversations_rounded_half_up() -> None:
    assert usage.rounded_ratio(5, 2) == 3  # 2.5
    assert usage.rounded_ratio(7, 2) == 4  # 3.5
    assert usage.rounded_ratio(4, 3) == 1  # 1.33
    assert usage.rounded_ratio(5, 3) == 2  # 1.67
    assert usage.rounded_ratio(4_001, 2) == 2_001  # 2,000.5
    assert usage.rounded_ratio(10, 0) is None
    figures = usage.Figures(context_tokens=2_950, generation_tokens=1_051, conversations=2)
    assert figures.tokens == 4_001
    assert figures.average_tokens == 2_001
