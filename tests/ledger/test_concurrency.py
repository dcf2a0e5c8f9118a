"""The ledger under real concurrency: threads, processes, and a worker killed mid-chat.

Every test runs on SQLite and on PostgreSQL (``db_url``). Work that must run
in another process goes through multiprocessing's "spawn" context: the child
imports this module afresh and opens its own ``Database``, as a second web
worker would. Children are joined with a deadline and killed past it, so a
hang fails the test instead of stalling the run.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import queue
import random
import signal
import sqlite3
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.errors import Conflict, InsufficientTokens
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import EntryKind, Hold, HoldStatus, LedgerEntry
from tests.support.accounts import add_tokens, balance_of, new_account
from tests.support.ledger import assert_ledger_clean

SPAWN = multiprocessing.get_context("spawn")
DEADLINE_SECONDS = 120  # for any one test's threads and processes together

# A job is ("reserve", account_id, tokens, key, ttl_seconds)
#        or ("settle", account_id, hold_id, context, generation);
# its outcome is ("ok", hold_id), ("insufficient", None), ("conflict", message)
# or ("error", traceback). Plain tuples, so they cross process boundaries.
Job = tuple[str, int, int, Any, int]
Outcome = tuple[str, Any]


class _Waitable(Protocol):
    def wait(self, timeout: float | None = None) -> bool: ...


# --- helpers shared by the parent and the spawned children -------------------


def _run_jobs(db: Database, jobs: Sequence[Job], now: dt.datetime) -> list[tuple[Job, Outcome]]:
    done: list[tuple[Job, Outcome]] = []
    for job in jobs:
        kind, account_id, amount_or_hold, key_or_context, ttl_or_generation = job
        try:
            with db.uow() as uow:
                if kind == "reserve":
                    hold = ledger.reserve(
                        uow.session,
                        account_id=account_id,
                        tokens=amount_or_hold,
                        key=key_or_context,
                        ttl_seconds=ttl_or_generation,
                        now=now,
                    )
                else:
                    hold = ledger.settle(
                        uow.session,
                        account_id=account_id,
                        hold_id=amount_or_hold,
                        context=key_or_context,
                        generation=ttl_or_generation,
                        now=now,
                    )
                uow.commit()
                outcome: Outcome = ("ok", hold.id)
        except InsufficientTokens:
            outcome = ("insufficient", None)
        except Conflict as exc:
            outcome = ("conflict", str(exc))
        except Exception:
            outcome = ("error", traceback.format_exc())
        done.append((job, outcome))
    return done


def _warm(db: Database, connections: int) -> None:
    """Open the pool's connections now, so that connecting is not part of the race."""
    opened = [db.engine.connect() for _ in range(connections)]
    for connection in opened:
        connection.close()


class _Crew:
    """Threads that each run their list of jobs once ``go`` is set."""

    def __init__(
        self, db: Database, job_lists: Sequence[Sequence[Job]], now: dt.datetime, go: _Waitable
    ) -> None:
        self._lined_up = threading.Barrier(len(job_lists) + 1)
        self._results: list[list[tuple[Job, Outcome]]] = [[] for _ in job_lists]
        self._threads = [
            threading.Thread(target=self._work, args=(db, jobs, now, go, out), daemon=True)
            for jobs, out in zip(job_lists, self._results, strict=True)
        ]

    def line_up(self) -> None:
        """Start the threads and return once every one is waiting for ``go``."""
        for thread in self._threads:
            thread.start()
        self._lined_up.wait(timeout=DEADLINE_SECONDS)

    def _work(
        self,
        db: Database,
        jobs: Sequence[Job],
        now: dt.datetime,
        go: _Waitable,
        out: list[tuple[Job, Outcome]],
    ) -> None:
        try:
            self._lined_up.wait(timeout=DEADLINE_SECONDS)
            if not go.wait(timeout=DEADLINE_SECONDS):
                raise TimeoutError("the start signal never came")
            out.extend(_run_jobs(db, jobs, now))
        except Exception:
            out.append((("none", 0, 0, None, 0), ("error", traceback.format_exc())))

    def finish(self, deadline: float) -> list[tuple[Job, Outcome]]:
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            raise TimeoutError("ledger threads still running at the deadline")
        return [done for out in self._results for done in out]


def _child(
    url: str, job_lists: list[list[Job]], now: dt.datetime, ready: Any, go: Any, results: Any
) -> None:
    """A second worker process: its own Database, its own threads."""
    try:
        db = Database(url)
        try:
            _warm(db, len(job_lists))
            crew = _Crew(db, job_lists, now, go)
            crew.line_up()
            ready.put(os.getpid())
            results.put(("done", crew.finish(time.monotonic() + DEADLINE_SECONDS)))
        finally:
            db.dispose()
    except BaseException:
        results.put(("crash", traceback.format_exc()))
        raise


def _reserve_then_hang(
    url: str, account_id: int, now: dt.datetime, ttl: int, commit: bool, out: Any
) -> None:
    """Reserve like a chat turn, then 'generate' until killed, committed or not."""
    db = Database(url)
    with db.uow() as uow:
        hold = ledger.reserve(
            uow.session, account_id=account_id, tokens=400, key="doomed", ttl_seconds=ttl, now=now
        )
        if commit:
            uow.commit()
        out.put(hold.id)
        time.sleep(DEADLINE_SECONDS)  # the process is killed long before this ends


# --- helpers of the parent ---------------------------------------------------


def _get(q: Any, processes: Sequence[Any], deadline: float, crashes: Any = None) -> Any:
    """The next item of ``q``; fails at once if a child died, or at the deadline."""
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            pass
        dead = [p for p in processes if p.exitcode not in (None, 0)]
        if dead or time.monotonic() > deadline:
            details = []
            while crashes is not None:
                try:
                    details.append(str(crashes.get(timeout=0.5)[1]))
                except queue.Empty:
                    break
            what = f"child exit codes {[p.exitcode for p in dead]}" if dead else "deadline"
            pytest.fail(f"{what}\n" + "\n".join(details))


def _stop(processes: Sequence[Any], deadline: float) -> None:
    """Join every child; kill the ones still running at the deadline. Leaves no zombies.

    A deadline already past kills at once (a test that failed midway).
    """
    for process in processes:
        if process.pid is None:  # never started
            continue
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(10)
        process.close()


def run_everywhere(
    db: Database,
    url: str,
    parent_jobs: list[list[Job]],
    child_jobs: list[list[list[Job]]],
    now: dt.datetime,
) -> list[tuple[Job, Outcome]]:
    """Run job lists on threads here and on threads of spawned processes, all starting at once."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    go, ready, results = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=_child,
            args=(url, jobs, now, ready, go, results),
            daemon=True,
            name=f"ledger-child-{n}",
        )
        for n, jobs in enumerate(child_jobs)
    ]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            _get(ready, processes, deadline, crashes=results)
        _warm(db, len(parent_jobs))
        crew = _Crew(db, parent_jobs, now, go)
        crew.line_up()
        go.set()
        done = crew.finish(deadline)
        for _ in processes:
            kind, payload = _get(results, processes, deadline)
            assert kind == "done", payload
            done.extend(payload)
        return done
    finally:
        go.set()  # release children waiting for a start that will not come
        _stop(processes, deadline)
        for q in (ready, results):
            q.close()
            q.join_thread()


def deal(jobs: Sequence[Job], hands: int) -> list[list[Job]]:
    return [list(jobs[n::hands]) for n in range(hands)]


def assert_never_negative(ctx: Context, account_id: int) -> None:
    with ctx.db.read() as session:
        afters = session.execute(
            select(LedgerEntry.available_after, LedgerEntry.reserved_after).where(
                LedgerEntry.account_id == account_id
            )
        ).all()
    assert afters and all(a >= 0 and r >= 0 for a, r in afters)
    balance = balance_of(ctx, account_id)
    assert balance.available >= 0 and balance.reserved >= 0


def in_threads(work: Callable[[int], Any], count: int) -> list[Any]:
    """Run ``work(n)`` on ``count`` threads released together; return results in order."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        try:
            start.wait(timeout=DEADLINE_SECONDS)
            results[n] = ("ok", work(n))
        except Exception:
            results[n] = ("error", traceback.format_exc())

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "threads still running"
    errors = [r[1] for r in results if r[0] == "error"]
    assert not errors, errors[0]
    return [r[1] for r in results]


def sweep_expired(ctx: Context) -> int:
    with ctx.db.uow() as uow:
        expired = ledger.expire_holds(uow.session, now=ctx.clock.now())
        uow.commit()
    return expired


# --- the tests ----------------------------------------------------------------


@pytest.mark.slow
def test_200_reservations_from_threads_and_processes_never_overdraw(
    ctx: Context, db_url: str
) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 5000)
    now = ctx.clock.now()

    # 16 workers: 8 threads here, 4 threads in each of 2 processes; 200 attempts in all.
    reservations: list[Job] = [("reserve", account, 100, f"turn-{n}", 300) for n in range(200)]
    hands = deal(reservations, 16)
    done = run_everywhere(ctx.db, db_url, hands[:8], [hands[8:12], hands[12:]], now)

    outcomes = Counter(outcome[0] for _, outcome in done)
    errors = [outcome[1] for _, outcome in done if outcome[0] == "error"]
    assert not errors, errors[0]
    assert outcomes == {"ok": 50, "insufficient": 150}
    hold_ids = [outcome[1] for _, outcome in done if outcome[0] == "ok"]
    assert len(set(hold_ids)) == 50
    assert_never_negative(ctx, account)
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (0, 5000)
    with ctx.db.read() as session:
        kinds = Counter(session.scalars(select(LedgerEntry.kind)).all())
    assert kinds == {EntryKind.GRANT: 1, EntryKind.RESERVE: 50}
    assert_ledger_clean(ctx)

    # Settle every hold at once, again from both processes and threads here.
    rng = random.Random(20261129)
    splits: dict[int, tuple[int, int]] = {}
    for hold_id in hold_ids:
        used = rng.choice([0, 100, rng.randint(0, 100)])
        context = rng.randint(0, used)
        splits[hold_id] = (context, used - context)
    settlements: list[Job] = [("settle", account, h, c, g) for h, (c, g) in splits.items()]
    hands = deal(settlements, 16)
    done = run_everywhere(ctx.db, db_url, hands[:8], [hands[8:12], hands[12:]], now)

    assert [outcome for _, outcome in done if outcome[0] != "ok"] == []
    assert sorted(outcome[1] for _, outcome in done) == sorted(hold_ids)
    spent = sum(c + g for c, g in splits.values())
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (5000 - spent, 0)
    with ctx.db.read() as session:
        holds = session.scalars(select(Hold).where(Hold.account_id == account)).all()
    assert {h.id: (h.context_tokens, h.generation_tokens) for h in holds} == splits
    assert {h.status for h in holds} == {HoldStatus.SETTLED}
    assert_never_negative(ctx, account)
    assert_ledger_clean(ctx)


def test_mixed_reserve_settle_release_and_expiry_conserve_tokens(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 3000)
    workers, rounds = 8, 40
    finished = threading.Event()
    tally: list[Counter[str]] = [Counter() for _ in range(workers)]
    conflicted: list[int] = []
    swept: list[int] = []
    expiry_errors: list[str] = []

    def reserve(rng: random.Random, key: str) -> tuple[int, int] | None:
        tokens = rng.randint(50, 400)
        try:
            with ctx.db.uow() as uow:
                hold = ledger.reserve(
                    uow.session,
                    account_id=account,
                    tokens=tokens,
                    key=key,
                    ttl_seconds=rng.randint(1, 20),
                    now=ctx.clock.now(),
                )
                uow.commit()
        except InsufficientTokens:
            return None
        return hold.id, tokens

    def finish(rng: random.Random, n: int, hold_id: int, tokens: int, how: str) -> None:
        context = rng.randint(0, tokens)
        generation = rng.randint(0, tokens - context)
        try:
            with ctx.db.uow() as uow:
                if how == "release":
                    ledger.release(
                        uow.session, account_id=account, hold_id=hold_id, now=ctx.clock.now()
                    )
                else:
                    ledger.settle(
                        uow.session,
                        account_id=account,
                        hold_id=hold_id,
                        context=context,
                        generation=generation,
                        now=ctx.clock.now(),
                    )
                uow.commit()
        except Conflict:  # the expiry job got there first
            conflicted.append(hold_id)
            return
        tally[n][how] += 1
        if how == "settle":
            tally[n]["spent"] += context + generation

    def chat(n: int) -> None:
        rng = random.Random(n)
        late: list[tuple[int, int]] = []
        for i in range(rounds):
            for hold_id, tokens in late:
                finish(rng, n, hold_id, tokens, "settle")
            late = []
            held = reserve(rng, f"w{n}-{i}")
            if held is None:
                tally[n]["insufficient"] += 1
                continue
            tally[n]["reserved"] += 1
            how = rng.choice(["settle", "release", "abandon", "late"])
            if how == "late":  # settles after other work: races the expiry job
                late.append(held)
            elif how != "abandon":  # abandoned holds are left for the expiry job
                finish(rng, n, *held, how)
        for hold_id, tokens in late:
            finish(rng, n, hold_id, tokens, "settle")

    def expire() -> None:
        try:
            while not finished.is_set():
                ctx.clock.advance(seconds=1)
                swept.append(sweep_expired(ctx))
                time.sleep(0.002)
        except Exception:
            expiry_errors.append(traceback.format_exc())

    expirers = [threading.Thread(target=expire, daemon=True) for _ in range(2)]
    for expirer in expirers:
        expirer.start()
    try:
        in_threads(chat, workers)
    finally:
        finished.set()
        for expirer in expirers:
            expirer.join(DEADLINE_SECONDS)
    assert not any(expirer.is_alive() for expirer in expirers)
    assert not expiry_errors, expiry_errors[0]
    ctx.clock.advance(days=1)
    while expired := sweep_expired(ctx):
        swept.append(expired)

    total = sum(tally, Counter())
    with ctx.db.read() as session:
        holds = session.scalars(select(Hold).where(Hold.account_id == account)).all()
    statuses = Counter(h.status for h in holds)
    assert len(holds) == total["reserved"]
    assert statuses[HoldStatus.PENDING] == 0
    assert statuses[HoldStatus.SETTLED] == total["settle"] > 0
    assert statuses[HoldStatus.RELEASED] == total["release"] > 0
    assert statuses[HoldStatus.EXPIRED] == sum(swept) > 0
    assert {h.status for h in holds if h.id in conflicted} <= {HoldStatus.EXPIRED}
    spent = sum(h.consumed for h in holds if h.status == HoldStatus.SETTLED)
    assert spent == total["spent"]
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (3000 - spent, 0)
    assert_never_negative(ctx, account)
    assert_ledger_clean(ctx)


@pytest.mark.slow
def test_a_worker_killed_between_reserve_and_settle_gets_its_hold_expired(
    ctx: Context, db_url: str
) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    started = ctx.clock.now()
    deadline = time.monotonic() + DEADLINE_SECONDS
    out = SPAWN.Queue()
    worker = SPAWN.Process(
        target=_reserve_then_hang, args=(db_url, account, started, 5, True, out), daemon=True
    )
    try:
        worker.start()
        hold_id = _get(out, [worker], deadline)
        balance = balance_of(ctx, account)
        assert (balance.available, balance.reserved) == (600, 400)
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        worker.join(30)
        assert worker.exitcode == -signal.SIGKILL
    finally:
        _stop([worker], time.monotonic())  # killed already, or the test failed
        out.close()
        out.join_thread()

    ctx.clock.set(started + dt.timedelta(seconds=4))
    assert sweep_expired(ctx) == 0  # still inside its TTL: the chat may yet settle
    assert balance_of(ctx, account).reserved == 400
    ctx.clock.set(started + dt.timedelta(seconds=6))
    assert sweep_expired(ctx) == 1
    assert sweep_expired(ctx) == 0
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (1000, 0)
    with ctx.db.read() as session:
        hold = session.get(Hold, hold_id)
        assert hold is not None and hold.status == HoldStatus.EXPIRED
    with ctx.db.uow() as uow, pytest.raises(Conflict):  # the worker's settle, had it lived
        ledger.settle(
            uow.session,
            account_id=account,
            hold_id=hold_id,
            context=10,
            generation=10,
            now=ctx.clock.now(),
        )
    assert_ledger_clean(ctx)


@pytest.mark.slow
def test_a_worker_killed_inside_its_transaction_leaves_nothing_and_frees_the_lock(
    ctx: Context, db_url: str
) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    deadline = time.monotonic() + DEADLINE_SECONDS
    out = SPAWN.Queue()
    worker = SPAWN.Process(
        target=_reserve_then_hang,
        args=(db_url, account, ctx.clock.now(), 5, False, out),
        daemon=True,
    )
    try:
        worker.start()
        _get(out, [worker], deadline)
        assert_lock_is_taken(ctx, db_url, account)
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        worker.join(30)
        assert worker.exitcode == -signal.SIGKILL
    finally:
        _stop([worker], time.monotonic())  # killed already, or the test failed
        out.close()
        out.join_thread()

    with ctx.db.uow() as uow:  # the dead worker's lock is gone: this does not wait
        if ctx.db.is_postgres:
            uow.session.execute(text("SET LOCAL lock_timeout = '20s'"))
        ledger.reserve(
            uow.session,
            account_id=account,
            tokens=1000,
            key="next",
            ttl_seconds=60,
            now=ctx.clock.now(),
        )
        uow.commit()
    with ctx.db.read() as session:  # SQLite may reuse the dead hold's id: compare keys
        keys = session.scalars(select(Hold.key)).all()
    assert keys == ["next"]
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (0, 1000)
    assert_ledger_clean(ctx)


def assert_lock_is_taken(ctx: Context, db_url: str, account_id: int) -> None:
    """Prove the child really holds the account's lock, so the kill tests something."""
    if ctx.db.is_postgres:
        with ctx.db.uow() as uow, pytest.raises(OperationalError, match="lock"):
            uow.session.execute(text("SET LOCAL lock_timeout = '200ms'"))
            ledger.lock_balance(uow.session, account_id=account_id)
        return
    path = make_url(db_url).database
    assert path
    connection = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            connection.execute("BEGIN IMMEDIATE")
    finally:
        connection.close()


def test_one_key_reserved_from_16_threads_at_once_holds_once(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)

    def reserve(_: int) -> int:
        with ctx.db.uow() as uow:
            hold = ledger.reserve(
                uow.session,
                account_id=account,
                tokens=300,
                key="same-turn",
                ttl_seconds=60,
                now=ctx.clock.now(),
            )
            uow.commit()
            return hold.id

    hold_ids = in_threads(reserve, 16)
    assert len(set(hold_ids)) == 1
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (700, 300)

    def settle(_: int) -> int:
        with ctx.db.uow() as uow:
            hold = ledger.settle(
                uow.session,
                account_id=account,
                hold_id=hold_ids[0],
                context=100,
                generation=20,
                now=ctx.clock.now(),
            )
            uow.commit()
            return hold.id

    assert set(in_threads(settle, 16)) == {hold_ids[0]}
    with ctx.db.read() as session:
        assert len(session.scalars(select(Hold)).all()) == 1
        kinds = Counter(session.scalars(select(LedgerEntry.kind)).all())
    assert kinds == {EntryKind.GRANT: 1, EntryKind.RESERVE: 1, EntryKind.SETTLE: 1}
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (880, 0)
    assert_ledger_clean(ctx)
