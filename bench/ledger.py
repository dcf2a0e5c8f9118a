"""Reserve+settle pairs per second, and their latencies, on SQLite and PostgreSQL.

    .venv/bin/python bench/ledger.py [--postgres URL] [--seconds N] [--show-sql]

Each worker thread loops over one chat turn's ledger work: a unit of work that
reserves 100 tokens and commits, then one that settles the hold (a random
split of at most 100) and commits. Latency is measured around each whole unit
of work, as a caller sees it: session, BEGIN, the verb, COMMIT.

Loads: one thread alone (the uncontended floor), then one hot account (every
writer queues on its lock) and 100 accounts (each turn picks one at random),
with 8 threads in this process; on PostgreSQL also 2 spawned processes x 4
threads, because threads of one Python process share the GIL and so
understate what the database can do.

SQLite runs on a temporary file; PostgreSQL on a database of its own,
``chatmeter_bench_<pid>``, created from the admin URL given and dropped at the
end. Every run ends with ``verify()`` over all accounts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import multiprocessing
import os
import platform
import random
import sqlite3
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from chatmeter import models  # noqa: F401  (registers every table)
from chatmeter.accounts import service as accounts
from chatmeter.db import Database, normalise_url
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import GrantSource
from chatmeter.ledger.verify import verify
from chatmeter.notifications import balance_notices

SPAWN = multiprocessing.get_context("spawn")
SPREAD_ACCOUNTS = 100
TOKENS_PER_ACCOUNT = 10**11  # never runs out, so no turn is refused
RESERVE = 100
TTL_SECONDS = 300
DEADLINE_GRACE = 120  # seconds past the run before workers are given up on


@dataclass(frozen=True)
class Scenario:
    backend: str
    load: str  # "1 account" or "100 accounts"
    processes: int
    threads: int

    @property
    def workers(self) -> str:
        return f"{self.processes} proc x {self.threads} thr"

    @property
    def tag(self) -> str:
        return f"{self.load.split()[0]}a-{self.processes}x{self.threads}"


@dataclass
class Result:
    scenario: Scenario
    seconds: float
    reserve_ms: array = field(default_factory=lambda: array("d"))
    settle_ms: array = field(default_factory=lambda: array("d"))
    errors: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return len(self.settle_ms)


# --- the work -----------------------------------------------------------------


def one_turn(
    db: Database, account_id: int, key: str, rng: random.Random, reserve_ms: array, settle_ms: array
) -> None:
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    with db.uow() as uow:
        hold = ledger.reserve(
            uow.session,
            account_id=account_id,
            tokens=RESERVE,
            key=key,
            ttl_seconds=TTL_SECONDS,
            now=now,
        )
        uow.commit()
    reserved = time.perf_counter()
    context = rng.randint(0, RESERVE)
    with db.uow() as uow:
        ledger.settle(
            uow.session,
            account_id=account_id,
            hold_id=hold.id,
            context=context,
            generation=rng.randint(0, RESERVE - context),
            now=now,
        )
        balance_notices.send_raised(uow.session, now=now)  # as every caller does
        uow.commit()
    settled = time.perf_counter()
    reserve_ms.append((reserved - started) * 1000)
    settle_ms.append((settled - reserved) * 1000)


def run_threads(
    db: Database,
    account_ids: list[int],
    threads: int,
    seconds: float,
    go: Any,
    tag: str,
    on_ready: Any = None,
) -> tuple[array, array, list[str]]:
    """``threads`` workers that warm up, wait for ``go``, then turn for ``seconds``.

    ``on_ready`` is called once every worker is warm and waiting; ``go`` is a
    threading or multiprocessing Event set by whoever starts the run.
    """
    lined_up = threading.Barrier(threads + 1)
    outs = [(array("d"), array("d"), []) for _ in range(threads)]

    def work(n: int) -> None:
        reserve_ms, settle_ms, errors = outs[n]
        rng = random.Random(f"{tag}-{n}")
        turn = 0

        def next_turn(into_reserve: array, into_settle: array) -> None:
            nonlocal turn
            turn += 1
            one_turn(
                db, rng.choice(account_ids), f"{tag}-{n}-{turn}", rng, into_reserve, into_settle
            )

        try:
            next_turn(array("d"), array("d"))  # warm-up: connection, statement caches
            lined_up.wait(timeout=DEADLINE_GRACE)
            if not go.wait(timeout=DEADLINE_GRACE):
                raise TimeoutError("no start signal")
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                try:
                    next_turn(reserve_ms, settle_ms)
                except Exception as exc:  # counted and shown; the run goes on
                    errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    lined_up.wait(timeout=DEADLINE_GRACE)
    if on_ready is not None:
        on_ready()
    return _join(pool, outs, seconds)


def _join(
    pool: list[threading.Thread], outs: list[tuple[array, array, list[str]]], seconds: float
) -> tuple[array, array, list[str]]:
    deadline = time.monotonic() + seconds + DEADLINE_GRACE
    for thread in pool:
        thread.join(max(0.0, deadline - time.monotonic()))
    reserve_ms, settle_ms, errors = array("d"), array("d"), []
    for r, s, e in outs:
        reserve_ms.extend(r)
        settle_ms.extend(s)
        errors.extend(e)
    if any(thread.is_alive() for thread in pool):
        errors.append("a worker thread was still running at the deadline")
    return reserve_ms, settle_ms, errors


def process_main(
    url: str,
    account_ids: list[int],
    threads: int,
    seconds: float,
    ready: Any,
    go: Any,
    results: Any,
    tag: str,
) -> None:
    """A spawned worker process: its own Database and threads, started by the parent's ``go``."""
    db = Database(url)
    try:
        results.put(
            run_threads(
                db, account_ids, threads, seconds, go, tag, on_ready=lambda: ready.put(os.getpid())
            )
        )
    except BaseException as exc:
        results.put((array("d"), array("d"), [f"process crashed: {exc!r}"]))
        raise
    finally:
        db.dispose()


def run_scenario(
    scenario: Scenario, url: str, db: Database, hot: int, spread: list[int], seconds: float
) -> Result:
    account_ids = [hot] if scenario.load == "1 account" else spread
    tag = scenario.tag  # idempotency keys must not repeat across runs on one account
    if scenario.processes == 1:
        go = threading.Event()
        clock: list[float] = []

        def start() -> None:
            clock.append(time.perf_counter())
            go.set()

        reserve_ms, settle_ms, errors = run_threads(
            db, account_ids, scenario.threads, seconds, go, tag, on_ready=start
        )
        elapsed = time.perf_counter() - clock[0]
        return Result(scenario, elapsed, reserve_ms, settle_ms, errors)

    go, ready, results = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=process_main,
            args=(url, account_ids, scenario.threads, seconds, ready, go, results, f"{tag}-p{n}"),
            daemon=True,
        )
        for n in range(scenario.processes)
    ]
    result = Result(scenario, 0.0)
    deadline = time.monotonic() + seconds + 2 * DEADLINE_GRACE
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=DEADLINE_GRACE)
        started = time.perf_counter()
        go.set()
        for _ in procs:
            reserve_ms, settle_ms, errors = results.get(
                timeout=max(1.0, deadline - time.monotonic())
            )
            result.reserve_ms.extend(reserve_ms)
            result.settle_ms.extend(settle_ms)
            result.errors.extend(errors)
        result.seconds = time.perf_counter() - started
    finally:
        go.set()
        for proc in procs:
            proc.join(max(1.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        for q in (ready, results):
            q.close()
            q.join_thread()
    return result


# --- setup ----------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="chatmeter-bench-") as tmp:
        yield f"sqlite:///{tmp}/bench.db"


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    admin = normalise_url(admin_url)
    name = f"chatmeter_bench_{os.getpid()}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def populate(db: Database) -> tuple[int, list[int]]:
    """One hot account and 100 others, each with tokens that will not run out."""
    now = dt.datetime.now(dt.UTC)
    period = f"{now:%Y-%m}"
    ids = []
    with db.uow() as uow:
        for n in range(SPREAD_ACCOUNTS + 1):
            account = accounts.create_account(uow.session, email=f"bench{n}@example.com", now=now)
            ledger.start_period(uow.session, account_id=account.id, period=period)
            ledger.grant(
                uow.session,
                account_id=account.id,
                amount=TOKENS_PER_ACCOUNT,
                source=GrantSource.ADJUSTMENT,
                key="bench",
                period=period,
                now=now,
            )
            ids.append(account.id)
        uow.commit()
    return ids[0], ids[1:]


def statements_per_turn(db: Database, account_id: int) -> tuple[list[str], list[str]]:
    """The SQL one reserve and one settle send, as SQLAlchemy executes it."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    now = dt.datetime.now(dt.UTC)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.uow() as uow:
            hold = ledger.reserve(
                uow.session,
                account_id=account_id,
                tokens=RESERVE,
                key="count-statements",
                ttl_seconds=TTL_SECONDS,
                now=now,
            )
            uow.commit()
        split = len(seen)
        with db.uow() as uow:
            ledger.settle(
                uow.session,
                account_id=account_id,
                hold_id=hold.id,
                context=60,
                generation=20,
                now=now,
            )
            uow.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen[:split], seen[split:]


def verify_all(db: Database) -> tuple[int, list[str]]:
    with db.read() as session:
        reports = verify(session)
    return len(reports), [p for r in reports for p in r.problems]


# --- reporting ------------------------------------------------------------------


def percentile(values: array, p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def machine(postgres_version: str | None) -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"date        {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"cpu         {len(os.sched_getaffinity(0))} usable of {os.cpu_count()} ({model})",
        f"load avg    {load} (1, 5, 15 min) at the start",
        f"python      {platform.python_version()} ({platform.python_implementation()})",
        f"sqlite      {sqlite3.sqlite_version}",
    ]
    if postgres_version:
        lines.append(f"postgresql  {postgres_version}")
    return lines


HEADER = (
    f"{'backend':<10} {'load':<13} {'workers':<15} {'pairs':>7} {'pairs/s':>8} "
    f"{'reserve p50':>11} {'p99':>7} {'settle p50':>10} {'p99':>7} {'errors':>6}"
)


def row(result: Result) -> str:
    s = result.scenario
    rate = result.pairs / result.seconds if result.seconds else 0.0
    r50, r99 = percentile(result.reserve_ms, 0.5), percentile(result.reserve_ms, 0.99)
    s50, s99 = percentile(result.settle_ms, 0.5), percentile(result.settle_ms, 0.99)
    return (
        f"{s.backend:<10} {s.load:<13} {s.workers:<15} {result.pairs:>7} {rate:>8.0f} "
        f"{r50:>9.1f}ms {r99:>5.1f}ms {s50:>8.1f}ms {s99:>5.1f}ms {len(result.errors):>6}"
    )


def bench_backend(backend: str, url: str, seconds: float, show_sql: bool) -> list[Result]:
    db = Database(url)
    try:
        db.create_all()
        hot, spread = populate(db)
        reserve_sql, settle_sql = statements_per_turn(db, spread[-1])
        extra = (
            "BEGIN and COMMIT are 2 more round trips"
            if backend == "postgres"
            else "COMMIT is one more"
        )
        print(
            f"{backend}: {len(reserve_sql)} statements per reserve, {len(settle_sql)} per "
            f"settle (as SQLAlchemy executes them; {extra})",
            flush=True,
        )
        if show_sql:
            for title, statements in (("reserve", reserve_sql), ("settle", settle_sql)):
                print(f"  -- {title}")
                for statement in statements:
                    print(f"     {statement[:150]}")
        # One thread first: the latency of an uncontended turn, the floor for the rest.
        scenarios = [Scenario(backend, "1 account", 1, 1)]
        scenarios += [Scenario(backend, load, 1, 8) for load in ("1 account", "100 accounts")]
        if backend == "postgres":
            scenarios += [Scenario(backend, load, 2, 4) for load in ("1 account", "100 accounts")]
        results = []
        for scenario in scenarios:
            result = run_scenario(scenario, url, db, hot, spread, seconds)
            print(row(result), flush=True)
            for error in sorted(set(result.errors))[:5]:
                print(f"    error: {error}")
            results.append(result)
        checked, problems = verify_all(db)
        print(
            f"{backend}: verify() over {checked} accounts: "
            f"{'clean' if not problems else f'{len(problems)} problems, first: {problems[0]}'}",
            flush=True,
        )
        return results
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("CHATMETER_BENCH_POSTGRES_URL"),
        help="admin URL of a PostgreSQL server (default: "
        "$CHATMETER_BENCH_POSTGRES_URL; without it only SQLite runs)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument(
        "--show-sql", action="store_true", help="print the statements of one reserve and one settle"
    )
    args = parser.parse_args()

    postgres_version = None
    if args.postgres:
        engine = create_engine(normalise_url(args.postgres))
        with engine.connect() as conn:
            postgres_version = conn.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()
    for line in machine(postgres_version):
        print(line)
    print(f"runs        {args.seconds:g} s each; reserve {RESERVE} tokens, settle <= {RESERVE}")
    print()

    results = []
    with sqlite_database() as url:
        results += bench_backend("sqlite", url, args.seconds, args.show_sql)
    if args.postgres:
        with postgres_database(args.postgres) as url:
            results += bench_backend("postgres", url, args.seconds, args.show_sql)

    print()
    print(HEADER)
    for result in results:
        print(row(result))
    print(f"\nload avg at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
