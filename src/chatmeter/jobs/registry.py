"""The named periodic jobs, registered in one place; each can be run by hand.

Every job is safe to run concurrently and repeatedly (locks, leases and unique
keys inside make a second run a no-op); the scheduler's lease only saves the
wasted work of several workers running the same job at once.

Each job runs in a lane, a thread of the worker: the money jobs (renewal, hold
expiry, email) share the main lane; training, which can take minutes a file,
has its own, so that nothing the customer pays for or is told waits behind it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatmeter.billing import charges, renewals, topups
from chatmeter.context import Context
from chatmeter.ledger import service as ledger
from chatmeter.notifications import balance_notices

log = logging.getLogger("chatmeter.worker")

MAIN_LANE = "main"
TRAINING_LANE = "training"
# Customers' endpoints can be slow (up to the webhook timeout each): their own lane, so
# that renewals and emails never wait behind them.
WEBHOOK_LANE = "webhooks"


@dataclass(frozen=True)
class Job:
    name: str
    every: dt.timedelta
    run: Callable[[Context], dict[str, Any]]
    help: str
    # Jobs that claim their own work item by item run on every tick of every
    # worker; the others are leased so that one worker runs them per interval.
    leased: bool = True
    lane: str = MAIN_LANE


def expire_holds(ctx: Context) -> dict[str, Any]:
    released = 0
    while True:  # in batches, one transaction each
        with ctx.db.uow() as uow:
            batch = ledger.expire_holds(uow.session, now=ctx.clock.now(), limit=200)
            balance_notices.send_raised(uow.session, now=ctx.clock.now(), settings=ctx.settings)
            uow.commit()
        released += batch
        if batch < 200:
            return {"released": released}


def renew(ctx: Context) -> dict[str, Any]:
    return renewals.run_renewals(ctx)


def auto_top_up(ctx: Context) -> dict[str, Any]:
    """Open a top-up for each account armed and below its threshold, then charge every
    due top-up invoice, each outside the account's lock (``billing.topups``)."""
    now = ctx.clock.now()
    with ctx.db.read() as session:
        due = topups.due_accounts(session)
    started = errors = 0
    for account_id in due:
        with ctx.db.uow() as uow:
            started += (
                topups.start(uow.session, settings=ctx.settings, account_id=account_id, now=now)
                is not None
            )
            uow.commit()
    with ctx.db.read() as session:
        invoices = topups.due_invoices(session, now=now)
    for invoice_id in invoices:
        try:
            charges.charge(ctx, invoice_id)
        except Exception:  # one gateway error must not stop the others; retried next run
            log.exception("charging top-up invoice %s failed; it is retried later", invoice_id)
            errors += 1
    return {"started": started, "charged": len(invoices) - errors, "errors": errors}


def deliver_outbox(ctx: Context) -> dict[str, Any]:
    from chatmeter.notifications import delivery, mailers

    report = delivery.deliver_due(
        ctx.db,
        mailer=mailers.make_mailer(ctx.settings),
        settings=ctx.settings,
        now=ctx.clock.now(),
    )
    return {"sent": report.sent, "failed": report.failed, "dead": report.dead}


def deliver_webhooks(ctx: Context) -> dict[str, Any]:
    from chatmeter.webhooks import delivery

    report = delivery.deliver_due(ctx.db, settings=ctx.settings, now=ctx.clock.now())
    return {"delivered": report.delivered, "failed": report.failed, "dead": report.dead}


def usage_surge(ctx: Context) -> dict[str, Any]:
    """Email each account about its assistants using far more than on a typical day
    (``chat.surges``), once per assistant and local day, one account a transaction."""
    from chatmeter.chat import surges

    now = ctx.clock.now()
    with ctx.db.read() as session:
        accounts = surges.accounts_used_today(session, now=now)
    queued = 0
    for account_id in accounts:
        with ctx.db.uow() as uow:
            queued += surges.alert(uow.session, account_id=account_id, now=now)
            uow.commit()
    return {"accounts": len(accounts), "queued": queued}


# Each run forgets at most this many rows of each kind, a transaction per batch: a
# first run on years of records catches up hour by hour instead of holding locks.
RETENTION_BATCH = 500
RETENTION_BATCHES = 100


def retention(ctx: Context) -> dict[str, Any]:
    """Forget what is over and older than ``retention_days``: sent emails, finished webhook
    deliveries and the events no delivery needs, Stripe's event ids, spent links.

    The ledger, invoices and conversations are never touched here.
    """
    from chatmeter.accounts import links
    from chatmeter.billing import webhooks as stripe_events
    from chatmeter.notifications import outbox
    from chatmeter.webhooks import events

    before = ctx.clock.now() - dt.timedelta(days=ctx.settings.retention_days)
    steps: dict[str, Callable[..., int]] = {
        "emails": outbox.prune,
        "webhook_deliveries": events.prune_deliveries,  # before their events: they hold them
        "webhook_events": events.prune_events,
        "stripe_events": stripe_events.prune_seen,
        "links": links.prune,
    }
    removed: dict[str, Any] = {}
    for name, prune in steps.items():
        removed[name] = 0
        for _ in range(RETENTION_BATCHES):
            with ctx.db.uow() as uow:
                batch = prune(uow.session, before=before, limit=RETENTION_BATCH)
                uow.commit()
            removed[name] += batch
            if batch < RETENTION_BATCH:
                break
    return removed


def train(ctx: Context) -> dict[str, Any]:
    from chatmeter.training import service as training

    return training.process_queue(ctx)


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            "renewal",
            dt.timedelta(minutes=1),
            renew,
            "Renew accounts whose month began (00:00 on the 1st in their zone); "
            "retry failed charges.",
        ),
        Job(
            "hold-expiry",
            dt.timedelta(seconds=15),
            expire_holds,
            "Release token holds that were neither settled nor released in time.",
        ),
        Job(
            "auto-top-up",
            dt.timedelta(seconds=5),
            auto_top_up,
            "Buy the packages of each account whose balance fell below its auto top-up "
            "threshold; charge due top-ups.",
            leased=False,
        ),
        Job(
            "outbox",
            dt.timedelta(seconds=5),
            deliver_outbox,
            "Send queued emails, retrying failures with backoff.",
        ),
        Job(
            "webhooks",
            dt.timedelta(seconds=5),
            deliver_webhooks,
            "Post the customers' webhook events to their endpoints, retrying failures "
            "with backoff.",
            leased=False,
            lane=WEBHOOK_LANE,
        ),
        Job(
            "usage-surge",
            dt.timedelta(minutes=5),
            usage_surge,
            "Email about assistants using far more tokens today than on a typical day "
            "(once per assistant and day).",
        ),
        Job(
            "retention",
            dt.timedelta(hours=1),
            retention,
            "Forget sent emails, finished webhook deliveries, Stripe event ids and spent "
            "links older than CHATMETER_RETENTION_DAYS.",
        ),
        Job(
            "training",
            dt.timedelta(seconds=1),
            train,
            "Extract, chunk, embed and index uploaded training files.",
            leased=False,
            lane=TRAINING_LANE,
        ),
    )
}
