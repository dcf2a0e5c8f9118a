"""Auto top-up (``billing.topups``), on SQLite and PostgreSQL.

Promises guarded here:

- when the balance falls below the threshold, the ``auto-top-up`` job buys the
  chosen packages once per crossing, however many turns cross at once; the
  tokens are this month's only and the subscription does not change;
- it re-arms once the balance is back at or above the threshold;
- at most ``monthly_cap`` top-ups a calendar month; the next month starts afresh;
- a declined charge turns it off, with one email that says why;
- with a gateway that confirms later (the manual one), the invoice waits and no
  second top-up starts meanwhile;
- a top-up opened but never charged (a process that died) is charged by the next run;
- other accounts are never touched; ``ledger verify`` stays clean throughout.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import traceback

from sqlalchemy import select

from chatmeter.billing import charges, purchases, renewals, topups
from chatmeter.billing.gateways import ChargeStatus, ManualGateway
from chatmeter.billing.models import AutoTopUp, Invoice, InvoiceKind, InvoiceStatus
from chatmeter.context import Context
from chatmeter.jobs.registry import JOBS
from chatmeter.jobs.worker import JobEvent, Worker
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Grant, GrantSource
from chatmeter.notifications import balance_notices
from chatmeter.notifications.models import OutboxMessage
from chatmeter.notifications.templates import render
from tests.billing.test_renewal import ScriptedGateway, utc
from tests.support.accounts import add_tokens, balance_of, new_account, spend, subscription_of
from tests.support.context import derived
from tests.support.ledger import assert_ledger_clean

PACKAGE = 5000
SUCCEEDED, FAILED = ChargeStatus.SUCCEEDED, ChargeStatus.FAILED


# --- helpers --------------------------------------------------------------------------


def with_gateway(ctx: Context, gateway: object) -> Context:
    return dataclasses.replace(ctx, gateway=gateway)  # type: ignore[arg-type]


def turn_on(
    ctx: Context, account: int, *, threshold: int = 1000, packages: int = 1, cap: int = 3
) -> None:
    with ctx.db.uow() as uow:
        topups.configure(
            uow.session,
            account_id=account,
            now=ctx.clock.now(),
            enabled=True,
            threshold=threshold,
            packages=packages,
            monthly_cap=cap,
        )
        uow.commit()


def run_job(ctx: Context) -> dict[str, object]:
    return JOBS["auto-top-up"].run(ctx)


def top_ups(ctx: Context, account: int) -> list[Invoice]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(Invoice)
                .where(Invoice.account_id == account, Invoice.kind == InvoiceKind.TOPUP)
                .order_by(Invoice.id)
            )
        )


def top_up_grants(ctx: Context, account: int) -> list[Grant]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(Grant)
                .where(Grant.account_id == account, Grant.memo.like("auto top-up%"))
                .order_by(Grant.id)
            )
        )


def setting(ctx: Context, account: int) -> AutoTopUp:
    with ctx.db.read() as session:
        row = session.get(AutoTopUp, account)
        assert row is not None
        return row


def emails(ctx: Context, kind: str, account: int | None = None) -> list[OutboxMessage]:
    with ctx.db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.kind == kind)
        if account is not None:
            query = query.where(OutboxMessage.account_id == account)
        return list(session.scalars(query.order_by(OutboxMessage.id)))


def give(ctx: Context, account: int, amount: int, key: str) -> None:
    """Tokens by hand, as ``chatmeter tokens adjust`` grants them (its notices sent)."""
    with ctx.db.uow() as uow:
        ledger.grant(
            uow.session,
            account_id=account,
            amount=amount,
            source=GrantSource.ADJUSTMENT,
            key=key,
            period="2026-11",
            now=ctx.clock.now(),
        )
        balance_notices.send_raised(uow.session, now=ctx.clock.now())
        uow.commit()


def spend_to(ctx: Context, account: int, balance: int, key: str) -> None:
    """A turn that leaves exactly ``balance`` tokens."""
    spend(ctx, account, balance_of(ctx, account).balance - balance, key)


def shop(ctx: Context, *, packages: int = 2, email: str = "owner@example.com") -> int:
    """An account that bought ``packages`` (a subscription of them) and turned auto top-up on."""
    account = new_account(ctx, email=email)
    purchases.purchase(ctx, account_id=account, packages=packages)
    turn_on(ctx, account)
    return account


# --- once per crossing ----------------------------------------------------------------


def test_it_fires_once_when_a_turn_crosses_the_threshold(ctx: Context) -> None:
    account = shop(ctx)
    spend_to(ctx, account, 1500, "above")
    assert run_job(ctx)["started"] == 0
    assert top_ups(ctx, account) == []

    spend_to(ctx, account, 900, "crossing")
    assert balance_of(ctx, account).balance == 900  # the turn itself charges nothing
    assert run_job(ctx) == {"started": 1, "charged": 1, "errors": 0}
    for _ in range(3):
        assert run_job(ctx)["started"] == 0

    (invoice,) = top_ups(ctx, account)
    assert (invoice.status, invoice.packages, invoice.key) == ("paid", 1, "topup:2026-11:1")
    assert invoice.amount_cents == 900
    (grant,) = top_up_grants(ctx, account)
    assert (grant.amount, grant.source, grant.period) == (PACKAGE, GrantSource.PURCHASE, "2026-11")
    assert grant.expires_at == utc(2026, 12, 1)  # this month's only
    assert grant.memo == "auto top-up of 1 packages"
    assert balance_of(ctx, account).balance == 900 + PACKAGE
    assert subscription_of(ctx, account).quantity == 2  # what renews is unchanged
    assert setting(ctx, account).armed  # back above the threshold
    assert len(emails(ctx, "topup_receipt", account)) == 1
    assert_ledger_clean(ctx)


def test_twenty_turns_crossing_at_once_buy_once(ctx: Context) -> None:
    """Twenty turns cross together while two workers run the job: one invoice, one grant."""
    account = shop(ctx, packages=2)
    turn_on(ctx, account, threshold=5000)
    start = threading.Barrier(22)
    stop = threading.Event()
    errors: list[str] = []

    def turn(i: int) -> None:
        try:
            start.wait(timeout=30)
            spend(ctx, account, 400, f"turn-{i}")
        except Exception:
            errors.append(traceback.format_exc())

    def worker() -> None:
        try:
            start.wait(timeout=30)
            while not stop.is_set():
                run_job(ctx)
        except Exception:
            errors.append(traceback.format_exc())

    turns = [threading.Thread(target=turn, args=(i,)) for i in range(20)]
    workers = [threading.Thread(target=worker) for _ in range(2)]
    for thread in turns + workers:
        thread.start()
    for thread in turns:
        thread.join(timeout=120)
    stop.set()
    for thread in workers:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in turns + workers), "a thread hung"
    assert not errors, errors[0]
    run_job(ctx)

    (invoice,) = top_ups(ctx, account)
    assert invoice.status == InvoiceStatus.PAID
    assert len(top_up_grants(ctx, account)) == 1
    assert balance_of(ctx, account).balance == 2 * PACKAGE - 20 * 400 + PACKAGE
    assert len(emails(ctx, "topup_receipt", account)) == 1
    assert_ledger_clean(ctx)


def test_turns_crossing_before_the_job_runs_buy_once(ctx: Context) -> None:
    account = shop(ctx)
    for i, left in enumerate((900, 700, 100)):
        spend_to(ctx, account, left, f"turn-{i}")
    run_job(ctx)
    run_job(ctx)
    assert len(top_ups(ctx, account)) == 1
    assert balance_of(ctx, account).balance == 100 + PACKAGE


def test_it_re_arms_once_the_balance_is_back_above_the_threshold(ctx: Context) -> None:
    account = shop(ctx, packages=1)
    spend_to(ctx, account, 500, "first")
    run_job(ctx)
    assert balance_of(ctx, account).balance == 500 + PACKAGE
    spend_to(ctx, account, 999, "second")  # below again: a second crossing
    run_job(ctx)
    assert [i.key for i in top_ups(ctx, account)] == ["topup:2026-11:1", "topup:2026-11:2"]
    assert balance_of(ctx, account).balance == 999 + PACKAGE
    assert_ledger_clean(ctx)


def test_turning_it_on_below_the_threshold_tops_up_at_the_next_run(ctx: Context) -> None:
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1)
    spend_to(ctx, account, 300, "low")
    turn_on(ctx, account, packages=2)
    run_job(ctx)
    (invoice,) = top_ups(ctx, account)
    assert (invoice.packages, invoice.status) == (2, "paid")
    assert balance_of(ctx, account).balance == 300 + 2 * PACKAGE


# --- the monthly cap --------------------------------------------------------------------


def test_the_cap_stops_it_for_the_month_and_the_next_month_starts_afresh(ctx: Context) -> None:
    account = shop(ctx, packages=1)
    turn_on(ctx, account, cap=2)
    for round_ in range(3):
        spend_to(ctx, account, 400, f"nov-{round_}")
        run_job(ctx)
    assert [i.key for i in top_ups(ctx, account)] == ["topup:2026-11:1", "topup:2026-11:2"]
    assert balance_of(ctx, account).balance == 400  # the third crossing bought nothing
    with ctx.db.read() as session:
        seen = topups.overview(
            session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
        )
    assert (seen["used_this_month"], seen["monthly_cap"]) == (2, 2)

    ctx.clock.set(utc(2026, 12, 1, 0, 0, 10))
    renewals.run_renewals(ctx)  # November's tokens, top-ups included, expire
    assert balance_of(ctx, account).balance == PACKAGE
    spend_to(ctx, account, 800, "dec")
    run_job(ctx)
    keys = [i.key for i in top_ups(ctx, account)]
    assert keys == ["topup:2026-11:1", "topup:2026-11:2", "topup:2026-12:1"]
    (december,) = [g for g in top_up_grants(ctx, account) if g.period == "2026-12"]
    assert december.expires_at == utc(2027, 1, 1)
    assert subscription_of(ctx, account).quantity == 1
    assert_ledger_clean(ctx)


def test_a_month_that_begins_below_the_threshold_tops_up_again(ctx: Context) -> None:
    """Capped in November and still below in December (no renewal lifts it): December's
    first change arms it again."""
    account = new_account(ctx)
    add_tokens(ctx, account, 3000)  # never expires; no subscription renews
    turn_on(ctx, account, threshold=2000, cap=1)
    spend_to(ctx, account, 1900, "nov-1")
    run_job(ctx)
    spend_to(ctx, account, 1000, "nov-2")  # the top-up's tokens used: below again
    run_job(ctx)  # capped: it only disarms
    assert len(top_ups(ctx, account)) == 1
    ctx.clock.set(utc(2026, 12, 1, 0, 0, 10))
    renewals.run_renewals(ctx)
    run_job(ctx)
    assert len(top_ups(ctx, account)) == 1  # December has had no change yet
    spend(ctx, account, 10, "dec")  # a December turn, still below
    run_job(ctx)
    assert [i.key for i in top_ups(ctx, account)] == ["topup:2026-11:1", "topup:2026-12:1"]
    assert_ledger_clean(ctx)


# --- declines and waiting payments ---------------------------------------------------------


def test_a_declined_charge_turns_it_off_with_one_email(ctx: Context) -> None:
    ctx = with_gateway(ctx, ScriptedGateway(SUCCEEDED, FAILED))
    account = shop(ctx)
    spend_to(ctx, account, 900, "crossing")
    run_job(ctx)
    (invoice,) = top_ups(ctx, account)
    assert (invoice.status, invoice.failure_reason) == ("failed", "card declined")
    assert top_up_grants(ctx, account) == []
    row = setting(ctx, account)
    assert (row.enabled, row.disabled_reason) == (False, "card declined")

    spend_to(ctx, account, 100, "lower")  # off: nothing more is tried
    for _ in range(2):
        run_job(ctx)
    renewals.run_renewals(ctx)  # nor does the renewal job retry a declined top-up
    assert len(top_ups(ctx, account)) == 1
    assert len(ctx.gateway.requests) == 2  # type: ignore[attr-defined]  # purchase + top-up

    (email,) = emails(ctx, "topup_disabled", account)
    rendered = render("topup_disabled", json.loads(email.context), base_url="https://x.example")
    assert "turned off" in rendered.subject
    for text in ("card declined", "9.00 EUR", invoice.number, "https://x.example/panel/billing"):
        assert text in rendered.text and text in rendered.html
    assert emails(ctx, "topup_receipt", account) == []
    assert_ledger_clean(ctx)

    turn_on(ctx, account)  # the owner fixed the card and turned it on again
    assert setting(ctx, account).disabled_reason is None
    spend_to(ctx, account, 50, "again")
    run_job(ctx)
    assert [i.key for i in top_ups(ctx, account)] == ["topup:2026-11:1", "topup:2026-11:2"]
    assert top_ups(ctx, account)[-1].status == "paid"


def test_with_the_manual_gateway_it_waits_and_starts_no_second(ctx: Context) -> None:
    ctx = with_gateway(ctx, ManualGateway(auto_approve=False))
    account = new_account(ctx)
    add_tokens(ctx, account, 5000)
    turn_on(ctx, account)
    spend_to(ctx, account, 900, "crossing")
    run_job(ctx)
    (invoice,) = top_ups(ctx, account)
    assert invoice.status == InvoiceStatus.PENDING
    assert balance_of(ctx, account).balance == 900  # nothing before the payment

    give(ctx, account, 2000, "more")  # back above: re-armed
    spend_to(ctx, account, 500, "second-crossing")  # while the first waits
    run_job(ctx)
    run_job(ctx)
    assert len(top_ups(ctx, account)) == 1
    with ctx.db.read() as session:
        seen = topups.overview(
            session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
        )
    assert seen["waiting"] is True

    with ctx.db.uow() as uow:  # the operator's `chatmeter invoices mark-paid`
        charges.confirm_payment(
            uow.session, account_id=account, invoice_id=invoice.id, now=ctx.clock.now()
        )
        uow.commit()
    assert balance_of(ctx, account).balance == 500 + PACKAGE
    assert len(emails(ctx, "topup_receipt", account)) == 1
    assert_ledger_clean(ctx)


def test_an_invoice_opened_but_never_charged_is_charged_later(ctx: Context) -> None:
    """The process died between opening the top-up and charging it."""
    account = shop(ctx)
    spend_to(ctx, account, 900, "crossing")
    with ctx.db.uow() as uow:
        opened = topups.start(
            uow.session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
        )
        uow.commit()
    assert opened is not None and opened.status == InvoiceStatus.OPEN
    renewals.run_renewals(ctx)  # the renewal job's retries pick it up too
    (invoice,) = top_ups(ctx, account)
    assert invoice.status == InvoiceStatus.PAID
    run_job(ctx)
    assert len(top_ups(ctx, account)) == 1
    assert balance_of(ctx, account).balance == 900 + PACKAGE
    assert_ledger_clean(ctx)


# --- emails and other accounts ---------------------------------------------------------


def test_the_receipt_says_what_was_bought_and_how_many_are_left(ctx: Context) -> None:
    account = shop(ctx)
    turn_on(ctx, account, packages=2, cap=3)
    spend_to(ctx, account, 900, "crossing")
    run_job(ctx)
    (invoice,) = top_ups(ctx, account)
    (email,) = emails(ctx, "topup_receipt", account)
    figures = json.loads(email.context)
    assert (figures["used"], figures["cap"], figures["threshold"]) == (1, 3, 1000)
    rendered = render("topup_receipt", figures, base_url="https://x.example")
    assert rendered.subject == f"Auto top-up {invoice.number}: 10,000 tokens added"
    for text in (
        "below 1,000 tokens",
        "2 packages",
        "18.00 EUR",
        "10,900 tokens",
        "1 of 3 top-ups",
        "2026-12-01",
        "never changes what renews",
    ):
        assert text in rendered.text and text in rendered.html


def test_other_accounts_are_untouched(ctx: Context) -> None:
    mine = shop(ctx, email="mine@example.com")
    other = new_account(ctx, email="other@example.com")
    purchases.purchase(ctx, account_id=other, packages=2)
    spend_to(ctx, other, 100, "other-low")  # never turned on
    run_job(ctx)
    assert top_ups(ctx, other) == []
    spend_to(ctx, mine, 900, "mine-low")
    run_job(ctx)
    assert len(top_ups(ctx, mine)) == 1
    assert top_ups(ctx, other) == []
    assert balance_of(ctx, other).balance == 100
    assert emails(ctx, "topup_receipt", other) == []
    assert_ledger_clean(ctx)


def test_the_turns_commit_wakes_the_worker_which_tops_up(ctx: Context) -> None:
    """The worker's interval is an hour: only the wake of the crossing turn's commit can
    start the top-up, and it does."""
    ctx = derived(ctx, worker_interval_seconds=3600)
    account = shop(ctx)
    first, fired = threading.Event(), threading.Event()

    def watch(event: JobEvent) -> None:
        if event.phase != "finished":
            return
        first.set()
        if event.result and event.result.get("started"):
            fired.set()

    worker = Worker(ctx, names=["auto-top-up"], on_job=watch)
    ctx.db.wake_worker = worker.wake
    threads = worker.start()
    try:
        assert first.wait(timeout=30)  # its first tick, before the crossing: nothing due
        assert not fired.is_set()
        spend_to(ctx, account, 900, "crossing")
        assert fired.wait(timeout=30), "the crossing did not wake the worker"
    finally:
        worker.stop()
        for thread in threads:
            thread.join(timeout=30)
    assert len(top_ups(ctx, account)) == 1
    assert balance_of(ctx, account).balance == 900 + PACKAGE
