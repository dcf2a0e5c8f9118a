"""How long the usage page's figures take for a busy account.

    .venv/bin/python bench/usage.py [--postgres URL] [--conversations N,N] [--backends ...]

One account with 3 assistants and N conversations of 3 turns (6 messages)
spread over the past year, next to 9 other accounts as busy as it (the usage
query must not read their rows). Measures ``chat.usage.usage`` for the last
30 and 90 days, ``recent_conversations`` and the balance every panel page
shows (``billing.summary.balance_summary``), p50/p99 over repeated calls,
on SQLite and PostgreSQL. Rows are inserted directly: the figures are about
reading them, and the real turn path is measured in bench/chat.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pathlib
import platform
import random
import sys
import tempfile
import time

from sqlalchemy import insert, text

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from chatmeter.accounts import service as accounts
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing.summary import balance_summary
from chatmeter.chat import usage
from chatmeter.chat.models import Conversation, Message
from chatmeter.db import Database
from chatmeter.ledger.models import LedgerEntry
from retrieval import load, percentile, postgres_database

ACCOUNTS = 10
NOW = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)


def fill(db: Database, conversations: int, rng: random.Random) -> int:
    """Every account gets ``conversations`` conversations; returns the first account's id."""
    first = None
    for n in range(ACCOUNTS):
        with db.uow() as uow:
            account = accounts.create_account(uow.session, email=f"bench{n}@example.com", now=NOW)
            bots = [
                assistants.create_assistant(
                    uow.session,
                    account_id=account.id,
                    fields=AssistantFields(name=f"a{i}"),
                    now=NOW,
                ).id
                for i in range(3)
            ]
            account_id = account.id
            uow.commit()
        first = first or account_id
        for start in range(0, conversations, 2000):
            count = min(2000, conversations - start)
            stamps = [NOW - dt.timedelta(seconds=rng.randrange(365 * 86400)) for _ in range(count)]
            rows = [
                {
                    "public_id": f"{account_id}-{start + i}",
                    "assistant_id": rng.choice(bots),
                    "account_id": account_id,
                    "visitor": "bench",
                    "messages": 6,
                    "context_tokens": 1500,
                    "generation_tokens": 360,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                for i, stamp in enumerate(stamps)
            ]
            with db.uow() as uow:
                ids = uow.session.execute(insert(Conversation).returning(Conversation.id), rows)
                messages = []
                for conversation_id, stamp in zip(ids.scalars(), stamps, strict=True):
                    for turn in range(3):
                        at = stamp + dt.timedelta(seconds=30 * turn)
                        common = {"conversation_id": conversation_id, "created_at": at}
                        messages.append(common | {"role": "user", "content": "q"})
                        messages.append(
                            common
                            | {
                                "role": "assistant",
                                "content": "a",
                                "context_tokens": 500,
                                "generation_tokens": 120,
                            }
                        )
                uow.session.execute(insert(Message), messages)
                # Each turn's reserve and settle entries, as the ledger writes them.
                entries = [
                    {
                        "account_id": account_id,
                        "kind": kind,
                        "available_delta": 0,
                        "available_after": 0,
                        "reserved_after": 0,
                        "consumed": 620 if kind == "settle" else 0,
                        "created_at": m["created_at"],
                    }
                    for m in messages
                    if m["role"] == "assistant"
                    for kind in ("reserve", "settle")
                ]
                uow.session.execute(insert(LedgerEntry), entries)
                uow.commit()
    if db.is_postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    assert first is not None
    return first


def timed(call, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50), percentile(times, 99)


def measure(db: Database, account_id: int, repeat: int) -> dict[str, tuple[float, float]]:
    today = NOW.date()
    results = {}
    for days in (30, 90):
        first = today - dt.timedelta(days=days - 1)

        def page(first: dt.date = first) -> None:
            with db.read() as session:
                usage.usage(
                    session, account_id=account_id, first_day=first, last_day=today, timezone="UTC"
                )

        results[f"usage {days}d"] = timed(page, repeat)

    def recent() -> None:
        with db.read() as session:
            usage.recent_conversations(
                session,
                account_id=account_id,
                first_day=today - dt.timedelta(days=29),
                last_day=today,
                timezone="UTC",
            )

    results["recent 30d"] = timed(recent, repeat)

    def figures() -> None:  # the balance in every panel page's sidebar
        with db.read() as session:
            balance_summary(session, account_id=account_id, now=NOW)

    results["balance"] = timed(figures, repeat)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CHATMETER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--conversations", default="10000,50000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, load average {load():.2f}"
    )
    print(f"{'backend':<10} {'conversations':>13} {'what':<11} {'p50 ms':>8} {'p99 ms':>8} load")
    for backend in args.backends.split(","):
        for size in (int(s) for s in args.conversations.split(",")):
            if backend == "sqlite":
                url, drop = f"sqlite:///{tempfile.mkdtemp()}/bench.db", (lambda: None)
            else:
                url, drop = postgres_database(args.postgres)
            db = Database(url)
            db.create_all()
            try:
                account_id = fill(db, size, random.Random(size))
                before = load()
                for what, (p50, p99) in measure(db, account_id, args.repeat).items():
                    print(
                        f"{backend:<10} {size:>13,} {what:<11} {p50:>8.1f} {p99:>8.1f} "
                        f"{before:.1f}-{load():.1f}"
                    )
            finally:
                db.engine.dispose()
                drop()


if __name__ == "__main__":
    main()
