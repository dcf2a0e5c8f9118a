"""The worker runs each named job once per interval, however many workers there are."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from chatmeter.context import Context
from chatmeter.jobs.worker import Worker
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance, Grant, GrantSource
from tests.support.accounts import add_tokens, new_account


def test_of_several_workers_one_runs_each_job(ctx: Context) -> None:
    workers = [Worker(ctx, names=["renewal", "hold-expiry"]) for _ in range(4)]
    barrier = threading.Barrier(len(workers))
    results: list[dict[str, dict[str, object]]] = []

    def tick(worker: Worker) -> None:
        barrier.wait()
        results.append(worker.tick())

    threads = [threading.Thread(target=tick, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ran = [name for result in results for name in result]
    assert sorted(ran) == ["hold-expiry", "renewal"]
    assert all(w.tick() == {} for w in workers)  # the lease holds until the interval passes
    ctx.clock.advance(minutes=1)
    assert sorted(workers[0].tick()) == ["hold-expiry", "renewal"]


def test_the_worker_renews_on_the_first_and_releases_stale_holds(ctx: Context) -> None:
    account = new_account(ctx)
    from chatmeter.billing import purchases

    purchases.purchase(ctx, account_id=account, packages=1)
    add_tokens(ctx, account, 100)
    with ctx.db.uow() as uow:
        ledger.reserve(
            uow.session,
            account_id=account,
            tokens=100,
            key="stale",
            ttl_seconds=60,
            now=ctx.clock.now(),
        )
        uow.commit()
    worker = Worker(ctx, names=["renewal", "hold-expiry"])
    worker.tick()
    ctx.clock.advance(days=16)  # 2026-12-01 12:00 UTC
    results = worker.tick()
    assert results["renewal"] == {"accounts": 1, "retries": 0, "errors": 0}
    assert results["hold-expiry"] == {"released": 1}
    with ctx.db.read() as session:
        balance = session.get(Balance, account)
        assert balance is not None
        renewals = session.scalar(
            select(func.count()).select_from(Grant).where(Grant.source == GrantSource.RENEWAL)
        )
    assert renewals == 1
    assert (balance.available, balance.reserved, balance.period_granted) == (5100, 0, 5000)


def test_a_failing_job_does_not_stop_the_others(ctx: Context, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from chatmeter.jobs import registry

    def broken(_ctx: Context) -> dict[str, object]:
        raise RuntimeError("boom")

    monkeypatch.setitem(
        registry.JOBS,
        "renewal",
        registry.Job("renewal", registry.JOBS["renewal"].every, broken, "x"),
    )
    results = Worker(ctx, names=["renewal", "hold-expiry"]).tick()
    assert results["renewal"] == {"error": "RuntimeError: boom"}
    assert results["hold-expiry"] == {"released": 0}
