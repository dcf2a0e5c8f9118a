"""The monthly renewal (``renewals.run_renewals``), on SQLite and PostgreSQL, each scenario
with a scripted gateway and with the Stripe gateway charging saved cards on the fake Stripe API.

Promises guarded here:

- the balance renews on the 1st at 00:00 in the account's time zone: exactly
  once per month, however often and from however many workers the job runs;
  never a second early; after downtime only the current month is renewed;
- the past month's unused tokens expire; a cancelled subscription is not
  renewed and its tokens stay usable until the 1st;
- a change of quantity applies at the next renewal only;
- a declined renewal charge grants nothing, emails the customer, keeps last
  month's tokens usable and is retried after ``renewal_retry_hours``; after
  ``renewal_max_attempts`` failures the subscription ends;
- the operator's free allowance is granted every month;
- with ``CHATMETER_ROLLOVER_MONTHS``, a month's unused package tokens stay usable that
  many more months (fixed on each invoice), spent first, and then expire; the free
  allowance never rolls over.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import traceback
from collections.abc import Iterator
from contextvars import ContextVar

import pytest
from sqlalchemy import select

from chatmeter.accounts import service as accounts
from chatmeter.billing import periods, purchases, renewals, subscriptions
from chatmeter.billing.gateways import ChargeRequest, ChargeResult, ChargeStatus, Customer
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.billing.stripe_gateway import StripeGateway
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.errors import InsufficientTokens
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import EntryKind, Grant, GrantSource, LedgerEntry
from chatmeter.notifications.models import OutboxMessage
from tests.support.accounts import balance_of, new_account, spend, subscription_of
from tests.support.fake_stripe import FakeStripe
from tests.support.ledger import assert_ledger_clean

PACKAGE = 5000
SUCCEEDED, FAILED = ChargeStatus.SUCCEEDED, ChargeStatus.FAILED


# Every scenario runs twice: with a gateway that answers from its script, and with the
# Stripe gateway charging saved cards on the fake Stripe API, told the same script.
PROCESSORS = ["scripted", "stripe"]
_stripe: ContextVar[FakeStripe | None] = ContextVar("stripe", default=None)


@pytest.fixture(autouse=True, params=PROCESSORS)
def processor(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "scripted":
        yield request.param
        return
    with FakeStripe() as fake:
        token = _stripe.set(fake)
        try:
            yield request.param
        finally:
            _stripe.reset(token)


class ScriptedGateway:
    """A PaymentGateway whose answers come from a script, then ``then`` for ever.

    It records every request, so a test can tell how often the card was charged.
    Thread-safe: the concurrent test shares one between threads. With the Stripe
    processor, each answer is Stripe's: the fake is told the scripted outcome and the
    real Stripe gateway charges the account's saved card off-session.
    """

    name = "scripted"
    hosted_checkout = False  # every account here has a card saved already

    def __init__(self, *script: ChargeStatus, then: ChargeStatus = SUCCEEDED) -> None:
        self.script = list(script)
        self.then = then
        self.requests: list[ChargeRequest] = []
        self._lock = threading.Lock()
        self._fake = _stripe.get()
        self._stripe = (
            StripeGateway(stripe_settings(self._fake)) if self._fake is not None else None
        )
        self._cards: dict[int, tuple[str, str]] = {}

    def charge(self, request: ChargeRequest) -> ChargeResult:
        with self._lock:
            self.requests.append(request)
            status = self.script.pop(0) if self.script else self.then
            if self._stripe is None:
                if status == FAILED:
                    return ChargeResult(FAILED, reason="card declined")
                return ChargeResult(status, reference=f"ref:{request.idempotency_key}")
            assert self._fake is not None
            customer, card = self._card_of(request.account_id)
            self._fake.script("card_declined" if status == FAILED else "succeeded")
            result = self._stripe.charge(dataclasses.replace(request, customer=customer, card=card))
        assert result.status == status, (result, status)
        return result

    def _card_of(self, account_id: int) -> tuple[str, str]:
        assert self._stripe is not None and self._fake is not None
        if account_id not in self._cards:
            customer = self._stripe.customer(
                Customer(account_id=account_id, email="owner@example.com", name="Shop")
            )
            self._cards[account_id] = (customer, self._fake.save_card(customer))
        return self._cards[account_id]

    def charged_invoices(self) -> list[int]:
        return [r.invoice_id for r in self.requests]


def stripe_settings(fake: FakeStripe) -> Settings:
    return Settings(
        _env_file=None,
        env=Env.TEST,
        payment_gateway="stripe",
        stripe_secret_key=fake.secret_key,
        stripe_publishable_key="pk_test_fake",
        stripe_webhook_secret=fake.webhook_secret,
        stripe_api_base=fake.url,
    )


# --- helpers ------------------------------------------------------------------------


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def setup(ctx: Context, gateway: ScriptedGateway | None = None, **settings: object) -> Context:
    """The test's context with a scripted gateway and changed settings."""
    changes: dict[str, object] = {"gateway": gateway or ScriptedGateway()}
    if settings:
        changes["settings"] = ctx.settings.model_copy(update=settings)
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def renewal_invoices(ctx: Context, account_id: int) -> list[Invoice]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(Invoice)
                .where(Invoice.account_id == account_id, Invoice.kind == InvoiceKind.RENEWAL)
                .order_by(Invoice.id)
            )
        )


def grants(ctx: Context, account_id: int, *sources: GrantSource) -> list[Grant]:
    with ctx.db.read() as session:
        query = select(Grant).where(Grant.account_id == account_id).order_by(Grant.id)
        if sources:
            query = query.where(Grant.source.in_(sources))
        return list(session.scalars(query))


def expired_tokens(ctx: Context, account_id: int) -> int:
    with ctx.db.read() as session:
        return sum(
            session.scalars(select(LedgerEntry.expired).where(LedgerEntry.account_id == account_id))
        )


def outbox(ctx: Context, kind: str, account_id: int | None = None) -> list[OutboxMessage]:
    with ctx.db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.kind == kind)
        if account_id is not None:
            query = query.where(OutboxMessage.account_id == account_id)
        return list(session.scalars(query.order_by(OutboxMessage.id)))


def can_reserve(ctx: Context, account_id: int, tokens: int, key: str) -> bool:
    """Whether a chat turn of ``tokens`` could start now (the hold is released again)."""
    with ctx.db.uow() as uow:
        try:
            ledger.reserve(
                uow.session,
                account_id=account_id,
                tokens=tokens,
                key=key,
                ttl_seconds=60,
                now=ctx.clock.now(),
            )
        except InsufficientTokens:
            return False
        return True  # rolled back: nothing kept


# --- exactly once ---------------------------------------------------------------------


def test_running_the_job_again_and_again_renews_once(ctx: Context) -> None:
    """The job runs every few seconds: December is renewed, charged and receipted once."""
    ctx = setup(ctx)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    spend(ctx, account, 3000, "november")
    ctx.clock.set(utc(2026, 12, 1, 0, 0, 5))
    for _ in range(3):
        renewals.run_renewals(ctx)
    ctx.clock.advance(days=3)
    renewals.run_renewals(ctx)

    (invoice,) = renewal_invoices(ctx, account)
    assert (invoice.period, invoice.status, invoice.packages) == ("2026-12", "paid", 2)
    (renewal,) = grants(ctx, account, GrantSource.RENEWAL)
    assert (renewal.amount, renewal.period) == (2 * PACKAGE, "2026-12")
    assert renewal.expires_at == utc(2027, 1, 1)
    assert len(ctx.gateway.requests) == 2  # type: ignore[attr-defined]  # purchase + renewal
    balance = balance_of(ctx, account)
    assert (balance.available, balance.period, balance.period_granted) == (
        2 * PACKAGE,
        "2026-12",
        2 * PACKAGE,
    )
    assert expired_tokens(ctx, account) == 2 * PACKAGE - 3000  # November's unused tokens
    (receipt,) = outbox(ctx, "renewal_receipt")
    assert json.loads(receipt.context)["period"] == "2026-12"
    assert subscription_of(ctx, account).renewed_period == "2026-12"
    assert_ledger_clean(ctx)


def test_four_workers_running_the_job_at_once_renew_once(ctx: Context) -> None:
    """Four threads run the job at the same moment for three accounts: one renewal each."""
    ctx = setup(ctx)
    accounts = [new_account(ctx, email=f"owner{i}@example.com") for i in range(3)]
    for packages, account in enumerate(accounts, start=1):
        purchases.purchase(ctx, account_id=account, packages=packages)
    ctx.clock.set(utc(2026, 12, 1, 0, 1))
    start = threading.Barrier(4)
    errors: list[str] = []

    def worker() -> None:
        try:
            start.wait(timeout=30)
            renewals.run_renewals(ctx)
        except Exception:  # reported below, with its traceback
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a renewal worker hung"
    assert not errors, errors[0]

    for packages, account in enumerate(accounts, start=1):
        (invoice,) = renewal_invoices(ctx, account)
        assert (invoice.status, invoice.packages) == (InvoiceStatus.PAID, packages)
        (renewal,) = grants(ctx, account, GrantSource.RENEWAL)
        assert renewal.amount == packages * PACKAGE
        assert balance_of(ctx, account).available == packages * PACKAGE
        assert len(outbox(ctx, "renewal_receipt", account)) == 1
    renewal_charges = [
        r
        for r in ctx.gateway.requests  # type: ignore[attr-defined]
        if "renewal" in r.description
    ]
    assert len(renewal_charges) == 3, "an account was charged twice"
    assert_ledger_clean(ctx)


def test_after_downtime_only_the_current_month_is_renewed(ctx: Context) -> None:
    """The clock jumps from 15 November to 20 February: one renewal, for February."""
    ctx = setup(ctx)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    spend(ctx, account, 3000, "november")
    ctx.clock.set(utc(2027, 2, 20, 9, 30))
    renewals.run_renewals(ctx)
    renewals.run_renewals(ctx)

    (invoice,) = renewal_invoices(ctx, account)
    assert invoice.period == "2027-02"
    (renewal,) = grants(ctx, account, GrantSource.RENEWAL)
    assert (renewal.period, renewal.amount) == ("2027-02", 2 * PACKAGE)
    assert renewal.expires_at == utc(2027, 3, 1)
    (november,) = grants(ctx, account, GrantSource.PURCHASE)
    assert november.remaining == 0 and november.expired_at is not None
    assert expired_tokens(ctx, account) == 2 * PACKAGE - 3000
    assert balance_of(ctx, account).available == 2 * PACKAGE
    assert len(ctx.gateway.requests) == 2  # type: ignore[attr-defined]
    # and March is renewed as usual
    ctx.clock.set(utc(2027, 3, 1))
    renewals.run_renewals(ctx)
    assert [i.period for i in renewal_invoices(ctx, account)] == ["2027-02", "2027-03"]
    assert balance_of(ctx, account).available == 2 * PACKAGE
    assert_ledger_clean(ctx)


def test_a_renewal_sends_no_running_out_emails(ctx: Context) -> None:
    """Last month's unused tokens expiring at the renewal is not "running out".

    The customer had 7,000 tokens left and gets 10,000 new ones at the same
    moment: neither the depleted email nor the low-balance warning is due
    (they are sent when the balance drops or runs out).
    """
    ctx = setup(ctx)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    spend(ctx, account, 3000, "november")
    ctx.clock.set(utc(2026, 12, 1))
    renewals.run_renewals(ctx)
    assert balance_of(ctx, account).available == 2 * PACKAGE
    with ctx.db.read() as session:
        at_renewal = session.scalars(
            select(OutboxMessage.kind)
            .where(OutboxMessage.created_at == utc(2026, 12, 1))
            .order_by(OutboxMessage.id)
        ).all()
    assert at_renewal == ["renewal_receipt"]


# --- never early ------------------------------------------------------------------------

ZONE_CASES = [
    # zone, account created at, the renewed month, its first instant in UTC
    ("UTC", utc(2026, 11, 15, 12), "2026-12", utc(2026, 12, 1)),
    ("Pacific/Auckland", utc(2026, 11, 15, 12), "2026-12", utc(2026, 11, 30, 11)),  # NZDT +13
    ("Pacific/Auckland", utc(2026, 6, 10, 12), "2026-07", utc(2026, 6, 30, 12)),  # NZST +12
    ("America/Los_Angeles", utc(2026, 11, 15, 12), "2026-12", utc(2026, 12, 1, 8)),  # PST
    ("America/Los_Angeles", utc(2026, 3, 15, 12), "2026-04", utc(2026, 4, 1, 7)),  # PDT
    ("Asia/Kolkata", utc(2026, 11, 15, 12), "2026-12", utc(2026, 11, 30, 18, 30)),
]


@pytest.mark.parametrize(
    ("zone", "created", "period", "first_instant"),
    ZONE_CASES,
    ids=[f"{c[0]}-{c[2]}" for c in ZONE_CASES],
)
def test_renewal_happens_at_local_midnight_never_early(
    ctx: Context, zone: str, created: dt.datetime, period: str, first_instant: dt.datetime
) -> None:
    local = first_instant.astimezone(periods.to_zone(zone))
    assert (local.day, local.hour, local.minute) == (1, 0, 0)  # the case itself is right
    ctx = setup(ctx)
    ctx.clock.set(created)
    account = new_account(ctx, timezone=zone)
    purchases.purchase(ctx, account_id=account, packages=1)

    ctx.clock.set(first_instant - dt.timedelta(seconds=1))  # 23:59:59 on the last day
    renewals.run_renewals(ctx)
    assert renewal_invoices(ctx, account) == []
    assert len(ctx.gateway.requests) == 1  # type: ignore[attr-defined]
    assert balance_of(ctx, account).available == PACKAGE
    assert can_reserve(ctx, account, PACKAGE, "last-minute")

    ctx.clock.set(first_instant)  # 00:00:00 on the 1st
    renewals.run_renewals(ctx)
    (invoice,) = renewal_invoices(ctx, account)
    assert (invoice.period, invoice.status) == (period, InvoiceStatus.PAID)
    (renewal,) = grants(ctx, account, GrantSource.RENEWAL)
    assert renewal.expires_at == periods.ends_at(period, zone)
    (bought,) = grants(ctx, account, GrantSource.PURCHASE)
    assert bought.expires_at == first_instant
    assert bought.expired_at == first_instant
    assert balance_of(ctx, account).available == PACKAGE
    assert_ledger_clean(ctx)


def test_daylight_saving_moves_the_renewal_instant_by_an_hour(ctx: Context) -> None:
    """Los Angeles renews on 1 April at 07:00 UTC and on 1 December at 08:00 UTC."""
    ctx = setup(ctx)
    ctx.clock.set(utc(2026, 3, 20))
    account = new_account(ctx, timezone="America/Los_Angeles")
    purchases.purchase(ctx, account_id=account, packages=1)
    renewed_at = []
    for period in ("2026-04", "2026-12"):
        first = periods.starts_at(period, "America/Los_Angeles")
        ctx.clock.set(first - dt.timedelta(seconds=1))
        renewals.run_renewals(ctx)
        assert period not in [i.period for i in renewal_invoices(ctx, account)]
        ctx.clock.set(first)
        renewals.run_renewals(ctx)
        (invoice,) = [i for i in renewal_invoices(ctx, account) if i.period == period]
        renewed_at.append(invoice.created_at)
    assert renewed_at == [utc(2026, 4, 1, 7), utc(2026, 12, 1, 8)]


@pytest.mark.parametrize(
    ("before", "after"),
    [("America/Los_Angeles", "Pacific/Auckland"), ("Pacific/Auckland", "America/Los_Angeles")],
)
def test_a_new_time_zone_mid_month_carries_no_tokens_into_the_next(
    ctx: Context, before: str, after: str
) -> None:
    """Last month's tokens end when the account enters the new month, in whatever zone it
    is in by then, even though their expiry instant was fixed in the old zone."""
    ctx = setup(ctx)
    ctx.clock.set(utc(2026, 11, 10))
    account = new_account(ctx, timezone=before)
    purchases.purchase(ctx, account_id=account, packages=1)
    with ctx.db.uow() as uow:
        accounts.update_account(
            uow.session, account_id=account, timezone=after, now=ctx.clock.now()
        )
        uow.commit()

    ctx.clock.set(periods.starts_at("2026-12", after))
    renewals.run_renewals(ctx)
    (invoice,) = renewal_invoices(ctx, account)
    assert invoice.period == "2026-12"
    (bought,) = grants(ctx, account, GrantSource.PURCHASE)
    assert bought.expired_at is not None
    figures = balance_of(ctx, account)
    assert figures.available == PACKAGE  # December's package, not November's as well
    assert_ledger_clean(ctx)


def test_a_purchase_after_moving_west_belongs_to_the_month_already_entered(
    ctx: Context,
) -> None:
    """Auckland has entered December; moved to Los Angeles, where it is still November,
    a purchase counts towards December and lasts until January, as renewed tokens do."""
    ctx = setup(ctx)
    ctx.clock.set(utc(2026, 11, 10))
    account = new_account(ctx, timezone="Pacific/Auckland")
    ctx.clock.set(periods.starts_at("2026-12", "Pacific/Auckland"))
    renewals.run_renewals(ctx)
    with ctx.db.uow() as uow:
        accounts.update_account(
            uow.session, account_id=account, timezone="America/Los_Angeles", now=ctx.clock.now()
        )
        uow.commit()
    assert periods.period_of(ctx.clock.now(), "America/Los_Angeles") == "2026-11"

    purchases.purchase(ctx, account_id=account, packages=1)
    (bought,) = grants(ctx, account, GrantSource.PURCHASE)
    assert bought.period == "2026-12"
    assert bought.expires_at == periods.starts_at("2027-01", "America/Los_Angeles")
    assert balance_of(ctx, account).period_granted == PACKAGE + ctx.settings.free_tokens
    ctx.clock.set(periods.starts_at("2026-12", "America/Los_Angeles"))
    renewals.run_renewals(ctx)
    (bought,) = grants(ctx, account, GrantSource.PURCHASE)
    assert bought.expired_at is None  # December is not entered twice
    assert_ledger_clean(ctx)


# --- cancelling and changing the quantity -----------------------------------------------


def test_a_cancelled_subscription_is_not_renewed_and_its_tokens_last_until_the_first(
    ctx: Context,
) -> None:
    """Cancelling stops renewals; the tokens stay usable until the 1st, then expire."""
    ctx = setup(ctx)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    with ctx.db.uow() as uow:
        subscriptions.cancel(uow.session, account_id=account, now=ctx.clock.now())
        uow.commit()
    assert len(outbox(ctx, "subscription_cancelled")) == 1

    ctx.clock.set(utc(2026, 11, 30, 23, 59, 59))
    renewals.run_renewals(ctx)
    spend(ctx, account, 500, "still-usable")
    assert balance_of(ctx, account).available == 2 * PACKAGE - 500

    ctx.clock.set(utc(2026, 12, 1))
    renewals.run_renewals(ctx)
    assert grants(ctx, account, GrantSource.RENEWAL) == []
    assert balance_of(ctx, account).available == 0
    assert expired_tokens(ctx, account) == 2 * PACKAGE - 500
    assert not can_reserve(ctx, account, 1, "after-the-first")
    ctx.clock.set(utc(2027, 1, 1, 6))
    renewals.run_renewals(ctx)
    assert grants(ctx, account, GrantSource.RENEWAL) == []
    assert len(ctx.gateway.requests) == 1, "a cancelled subscription was charged"  # type: ignore[attr-defined]
    assert outbox(ctx, "renewal_receipt") == []
    assert all(i.amount_cents == 0 for i in renewal_invoices(ctx, account))
    assert_ledger_clean(ctx)


def test_a_new_quantity_applies_at_the_next_renewal_only(ctx: Context) -> None:
    """Raising or lowering the packages changes nothing this month, only the next renewal."""
    ctx = setup(ctx)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    with ctx.db.uow() as uow:
        subscriptions.change_quantity(
            uow.session, account_id=account, packages=5, now=ctx.clock.now()
        )
        uow.commit()
    balance = balance_of(ctx, account)
    assert (balance.available, balance.period_granted) == (2 * PACKAGE, 2 * PACKAGE)
    subscription = subscription_of(ctx, account)
    assert (subscription.quantity, subscription.renewing_quantity) == (2, 5)

    ctx.clock.set(utc(2026, 12, 1))
    renewals.run_renewals(ctx)
    (invoice,) = renewal_invoices(ctx, account)
    assert (invoice.packages, invoice.amount_cents) == (5, 4500)
    assert balance_of(ctx, account).available == 5 * PACKAGE
    assert subscription_of(ctx, account).quantity == 5

    with ctx.db.uow() as uow:  # lowering it also waits for the 1st
        subscriptions.change_quantity(
            uow.session, account_id=account, packages=1, now=ctx.clock.now()
        )
        uow.commit()
    assert balance_of(ctx, account).available == 5 * PACKAGE
    ctx.clock.set(utc(2027, 1, 1))
    renewals.run_renewals(ctx)
    assert [i.packages for i in renewal_invoices(ctx, account)] == [5, 1]
    assert balance_of(ctx, account).available == PACKAGE
    assert_ledger_clean(ctx)


# --- failed renewal charges --------------------------------------------------------------


def test_a_declined_renewal_grants_nothing_and_is_retried(ctx: Context) -> None:
    """A declined charge: no tokens, one email, old tokens usable, retried after 24 hours."""
    gateway = ScriptedGateway(SUCCEEDED, FAILED, SUCCEEDED)  # purchase, renewal, retry
    ctx = setup(ctx, gateway, renewal_retry_hours=24)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    spend(ctx, account, 1000, "november")

    ctx.clock.set(utc(2026, 12, 1, 0, 0, 30))
    renewals.run_renewals(ctx)
    (invoice,) = renewal_invoices(ctx, account)
    assert (invoice.status, invoice.attempts) == (InvoiceStatus.OPEN, 1)
    # The processor's own words: the script's, or Stripe's decline message and code.
    assert invoice.failure_reason in ("card declined", "Your card was declined. (generic_decline)")
    assert json.loads(outbox(ctx, "renewal_failed")[0].context)["reason"] == invoice.failure_reason
    assert invoice.next_attempt_at == utc(2026, 12, 2, 0, 0, 30)
    assert grants(ctx, account, GrantSource.RENEWAL) == []
    (failed,) = outbox(ctx, "renewal_failed")
    assert failed.account_id == account
    assert json.loads(failed.context)["next_attempt_on"] == "2026-12-02"
    # last month's tokens stay usable while the charge is retried
    assert balance_of(ctx, account).available == 2 * PACKAGE - 1000
    spend(ctx, account, 400, "december-1")

    for at in (utc(2026, 12, 1, 6), utc(2026, 12, 2, 0, 0, 29)):  # not yet due
        ctx.clock.set(at)
        renewals.run_renewals(ctx)
    assert len(gateway.requests) == 2
    assert grants(ctx, account, GrantSource.RENEWAL) == []

    ctx.clock.set(utc(2026, 12, 2, 0, 0, 30))
    renewals.run_renewals(ctx)
    renewals.run_renewals(ctx)
    assert len(gateway.requests) == 3
    (invoice,) = renewal_invoices(ctx, account)
    assert (invoice.status, invoice.attempts) == (InvoiceStatus.PAID, 2)
    (renewal,) = grants(ctx, account, GrantSource.RENEWAL)
    assert (renewal.period, renewal.amount) == ("2026-12", 2 * PACKAGE)
    assert balance_of(ctx, account).available == 2 * PACKAGE
    assert expired_tokens(ctx, account) == 2 * PACKAGE - 1400
    assert len(outbox(ctx, "renewal_failed")) == 1
    assert len(outbox(ctx, "renewal_receipt")) == 1
    assert_ledger_clean(ctx)


def test_after_the_last_failed_attempt_the_subscription_ends(ctx: Context) -> None:
    """After ``renewal_max_attempts`` declines: cancelled, old tokens expired, no more charges."""
    gateway = ScriptedGateway(SUCCEEDED, then=FAILED)
    ctx = setup(ctx, gateway, renewal_retry_hours=6, renewal_max_attempts=3)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)

    start = utc(2026, 12, 1, 0, 1)
    for attempt in range(3):
        ctx.clock.set(start + dt.timedelta(hours=6 * attempt))
        renewals.run_renewals(ctx)
        assert len(gateway.requests) == 2 + attempt
        if attempt < 2:  # still retrying: last month's tokens are usable
            assert subscription_of(ctx, account).status == "active"
            assert balance_of(ctx, account).available == 2 * PACKAGE
    (invoice,) = renewal_invoices(ctx, account)
    assert (invoice.status, invoice.attempts) == (InvoiceStatus.FAILED, 3)
    subscription = subscription_of(ctx, account)
    assert subscription.status == "cancelled"
    assert subscription.renewing_quantity == 0
    assert balance_of(ctx, account).available == 0
    assert grants(ctx, account, GrantSource.RENEWAL) == []
    failures = outbox(ctx, "renewal_failed")
    assert len(failures) == 3
    assert json.loads(failures[-1].context)["next_attempt_on"] is None
    # nothing more is tried, this month or the next
    for at in (utc(2026, 12, 5), utc(2027, 1, 1, 1)):
        ctx.clock.set(at)
        renewals.run_renewals(ctx)
    assert len(gateway.requests) == 4
    assert_ledger_clean(ctx)


def test_a_purchase_while_the_renewal_is_retried_stays_in_the_subscription(
    ctx: Context,
) -> None:
    """1 package; December's charge fails; 2 more bought on 1 December; the retry succeeds.

    The two packages were bought for good ("the subscription quantity grows, so
    the next renewal grants and charges the new quantity"): January renews 3.
    """
    gateway = ScriptedGateway(SUCCEEDED, FAILED)  # then everything succeeds
    ctx = setup(ctx, gateway, renewal_retry_hours=24)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1)
    ctx.clock.set(utc(2026, 12, 1, 0, 1))
    renewals.run_renewals(ctx)  # declined
    ctx.clock.set(utc(2026, 12, 1, 10))
    purchases.purchase(ctx, account_id=account, packages=2)
    assert subscription_of(ctx, account).renewing_quantity == 3
    ctx.clock.set(utc(2026, 12, 2, 0, 1))
    renewals.run_renewals(ctx)  # the retry succeeds: December's 1 package
    assert renewal_invoices(ctx, account)[0].status == InvoiceStatus.PAID
    assert balance_of(ctx, account).available == 3 * PACKAGE

    assert subscription_of(ctx, account).renewing_quantity == 3
    ctx.clock.set(utc(2027, 1, 1))
    renewals.run_renewals(ctx)
    assert renewal_invoices(ctx, account)[-1].packages == 3


def test_a_quantity_change_while_the_renewal_is_retried_is_kept(ctx: Context) -> None:
    """A change asked for on 1 December, while December's charge is being retried,
    applies at the next renewal (January), not lost when the retry succeeds."""
    gateway = ScriptedGateway(SUCCEEDED, FAILED)
    ctx = setup(ctx, gateway, renewal_retry_hours=24)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    ctx.clock.set(utc(2026, 12, 1, 0, 1))
    renewals.run_renewals(ctx)  # declined
    ctx.clock.set(utc(2026, 12, 1, 10))
    with ctx.db.uow() as uow:
        subscriptions.change_quantity(
            uow.session, account_id=account, packages=4, now=ctx.clock.now()
        )
        uow.commit()
    ctx.clock.set(utc(2026, 12, 2, 0, 1))
    renewals.run_renewals(ctx)  # the retry succeeds
    assert subscription_of(ctx, account).renewing_quantity == 4
    ctx.clock.set(utc(2027, 1, 1))
    renewals.run_renewals(ctx)
    assert renewal_invoices(ctx, account)[-1].packages == 4


# --- the free allowance ----------------------------------------------------------------


def test_the_free_allowance_is_granted_every_month(ctx: Context) -> None:
    """The operator's free tokens come every month, with or without packages, free of charge."""
    ctx = setup(ctx, free_tokens=1000)
    account = new_account(ctx)
    assert balance_of(ctx, account).available == 1000  # this month's, at sign-up
    spend(ctx, account, 300, "november")

    ctx.clock.set(utc(2026, 12, 1))
    renewals.run_renewals(ctx)
    balance = balance_of(ctx, account)
    assert (balance.available, balance.period_granted) == (1000, 1000)
    assert expired_tokens(ctx, account) == 700
    assert ctx.gateway.requests == []  # type: ignore[attr-defined]  # nothing to charge
    assert outbox(ctx, "renewal_receipt") == []

    purchases.purchase(ctx, account_id=account, packages=1)
    ctx.clock.set(utc(2027, 1, 1))
    renewals.run_renewals(ctx)
    balance = balance_of(ctx, account)
    assert (balance.available, balance.period_granted) == (PACKAGE + 1000, PACKAGE + 1000)
    free = grants(ctx, account, GrantSource.FREE)
    assert [(g.period, g.amount) for g in free] == [
        ("2026-11", 1000),
        ("2026-12", 1000),
        ("2027-01", 1000),
    ]
    (receipt,) = outbox(ctx, "renewal_receipt")
    assert json.loads(receipt.context)["free_tokens"] == 1000
    with ctx.db.read() as session:
        kinds = set(session.scalars(select(LedgerEntry.kind)))
    assert EntryKind.GRANT_EXPIRY in kinds
    assert_ledger_clean(ctx)


# --- rollover ---------------------------------------------------------------------------


def test_unused_package_tokens_roll_over_one_month_when_the_operator_allows_it(
    ctx: Context,
) -> None:
    """November's unused packages last through December, spent before December's own;
    the free allowance does not roll over; each invoice keeps the rollover it was made with."""
    ctx = setup(ctx, rollover_months=1, free_tokens=1000)
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    (bought,) = grants(ctx, account, GrantSource.PURCHASE)
    assert (bought.period, bought.last_period, bought.expires_at) == (
        "2026-11",
        "2026-12",
        utc(2027, 1, 1),
    )
    spend(ctx, account, 500, "november")  # the free tokens expire first: they pay first

    ctx.clock.set(utc(2026, 12, 1))
    renewals.run_renewals(ctx)
    (december,) = renewal_invoices(ctx, account)
    assert (december.status, december.rollover_months) == ("paid", 1)
    (renewal,) = grants(ctx, account, GrantSource.RENEWAL)
    assert (renewal.last_period, renewal.expires_at) == ("2027-01", utc(2027, 2, 1))
    assert expired_tokens(ctx, account) == 500  # November's free tokens only
    balance = balance_of(ctx, account)
    # November's 10,000 carried, December's 10,000 renewed and 1,000 free; the limit (the
    # 20 % rule's) is what was granted for December.
    assert (balance.available, balance.period_granted) == (21_000, 11_000)

    spend(ctx, account, 4000, "december")  # November's expire first: they pay first
    with ctx.db.read() as session:
        assert session.get(Grant, bought.id).remaining == 6000  # type: ignore[union-attr]

    ctx = setup(ctx, ctx.gateway, rollover_months=0)  # the operator turns rollover off
    ctx.clock.set(utc(2027, 1, 1))
    renewals.run_renewals(ctx)
    assert [i.rollover_months for i in renewal_invoices(ctx, account)] == [1, 0]
    january = grants(ctx, account, GrantSource.RENEWAL)[-1]
    assert (january.last_period, january.expires_at) == (None, utc(2027, 2, 1))
    # November's 6,000 and December's free 1,000 end; December's renewal was bought
    # with a month of rollover and keeps it.
    assert expired_tokens(ctx, account) == 500 + 6000 + 1000
    assert balance_of(ctx, account).available == 10_000 + 10_000 + 1000

    ctx.clock.set(utc(2027, 2, 1))
    renewals.run_renewals(ctx)
    assert expired_tokens(ctx, account) == 500 + 6000 + 1000 + 10_000 + 10_000 + 1000
    assert balance_of(ctx, account).available == 10_000 + 1000  # February's own
    assert_ledger_clean(ctx)


def test_without_rollover_no_grant_names_a_last_month(ctx: Context) -> None:
    """The default: unused tokens end with their month, as the help article says."""
    ctx = setup(ctx)
    assert ctx.settings.rollover_months == 0
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1)
    ctx.clock.set(utc(2026, 12, 1))
    renewals.run_renewals(ctx)
    assert [g.last_period for g in grants(ctx, account)] == [None, None]
    assert [i.rollover_months for i in renewal_invoices(ctx, account)] == [0]
    assert expired_tokens(ctx, account) == PACKAGE
