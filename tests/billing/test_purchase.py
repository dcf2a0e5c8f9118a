"""Buying packages mid-month (``purchases.purchase``), on SQLite and PostgreSQL.

Promises guarded here:

- N packages add N × 5,000 tokens *at once*, after the payment succeeds, and
  raise both the subscription quantity and this month's limit;
- a purchase queues one receipt;
- a retry with the same idempotency key returns the first invoice and never
  charges or grants twice; the same key for another purchase is refused;
- bad input is refused before anything is written;
- a declined card grants nothing; a pending payment grants nothing until it
  is confirmed, and confirming twice grants once;
- buying after cancelling starts a subscription of just the new packages;
- a purchase re-arms the low-balance warning.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from chatmeter.billing import charges, periods, purchases, renewals, subscriptions
from chatmeter.billing.gateways import ChargeRequest, ChargeResult, ChargeStatus, ManualGateway
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.context import Context
from chatmeter.errors import IdempotencyConflict, InvalidInput, NotFound, PaymentFailed
from chatmeter.ledger.models import Grant, GrantSource, LedgerEntry
from chatmeter.notifications.models import OutboxMessage
from tests.support.accounts import balance_of, new_account, spend, subscription_of
from tests.support.ledger import assert_ledger_clean

PACKAGE = 5000


class RecordingGateway:
    """A PaymentGateway that answers from a script and remembers every request."""

    name = "recording"

    def __init__(self, *script: ChargeStatus, then: ChargeStatus = ChargeStatus.SUCCEEDED) -> None:
        self.script = list(script)
        self.then = then
        self.requests: list[ChargeRequest] = []

    def charge(self, request: ChargeRequest) -> ChargeResult:
        self.requests.append(request)
        status = self.script.pop(0) if self.script else self.then
        if status == ChargeStatus.FAILED:
            return ChargeResult(status, reason="card declined")
        if status == ChargeStatus.PENDING:
            return ChargeResult(status)
        return ChargeResult(status, reference=f"ref:{request.idempotency_key}")


# --- helpers ------------------------------------------------------------------------


def with_gateway(ctx: Context, gateway: object) -> Context:
    return dataclasses.replace(ctx, gateway=gateway)  # type: ignore[arg-type]


def outbox(ctx: Context, kind: str) -> list[OutboxMessage]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
            )
        )


def purchase_grants(ctx: Context, account_id: int) -> list[Grant]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(Grant)
                .where(Grant.account_id == account_id, Grant.source == GrantSource.PURCHASE)
                .order_by(Grant.id)
            )
        )


def row_counts(ctx: Context) -> dict[str, int]:
    """How many rows each table the purchase path writes to holds."""
    with ctx.db.read() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Invoice, Grant, LedgerEntry, OutboxMessage)
        }


# --- buying ---------------------------------------------------------------------------


@pytest.mark.parametrize("packages", [1, 3, 10])
def test_buying_packages_grants_their_tokens_at_once(ctx: Context, packages: int) -> None:
    """N packages: N × 5,000 tokens now, quantity N, limit N × 5,000, one paid invoice."""
    account = new_account(ctx)
    invoice = purchases.purchase(ctx, account_id=account, packages=packages)

    assert invoice.status == InvoiceStatus.PAID
    assert invoice.kind == InvoiceKind.PURCHASE
    assert (invoice.packages, invoice.tokens) == (packages, packages * PACKAGE)
    assert invoice.amount_cents == packages * 900  # 9.00 per package by default
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (packages * PACKAGE, 0)
    assert balance.period_granted == packages * PACKAGE
    subscription = subscription_of(ctx, account)
    assert (subscription.quantity, subscription.renewing_quantity) == (packages, packages)
    (grant,) = purchase_grants(ctx, account)
    assert (grant.amount, grant.invoice_id) == (packages * PACKAGE, invoice.id)
    # the tokens of this month expire when the month does: 1 December, 00:00 UTC
    assert grant.expires_at == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert_ledger_clean(ctx)


def test_a_purchase_queues_one_receipt_with_the_real_figures(ctx: Context) -> None:
    """One receipt email, in the same transaction, with the figures the customer can check."""
    account = new_account(ctx)
    invoice = purchases.purchase(ctx, account_id=account, packages=10)
    (receipt,) = outbox(ctx, "purchase_receipt")
    assert receipt.account_id == account
    assert receipt.to_address == "owner@example.com"
    figures = json.loads(receipt.context)
    assert figures["invoice_number"] == invoice.number
    assert (figures["packages"], figures["tokens"]) == (10, 50_000)
    assert (figures["balance"], figures["limit"]) == (50_000, 50_000)
    assert (figures["amount"], figures["currency"]) == ("90.00", "EUR")
    assert figures["monthly_packages"] == 10
    assert figures["renews_on"] == "2026-12-01"


def test_a_second_purchase_adds_to_the_first(ctx: Context) -> None:
    """Quantity and limit grow with every purchase; tokens already there stay."""
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2)
    spend(ctx, account, 1500, "chat-1")
    purchases.purchase(ctx, account_id=account, packages=3)
    balance = balance_of(ctx, account)
    assert balance.available == 5 * PACKAGE - 1500
    assert balance.period_granted == 5 * PACKAGE
    assert subscription_of(ctx, account).quantity == 5
    assert len(outbox(ctx, "purchase_receipt")) == 2
    assert_ledger_clean(ctx)


def test_the_package_size_is_the_operators_setting(ctx: Context) -> None:
    """Packages hold ``settings.package_tokens`` tokens (5,000 unless the operator says else)."""
    small = dataclasses.replace(
        ctx, settings=ctx.settings.model_copy(update={"package_tokens": 1000})
    )
    account = new_account(small)
    purchases.purchase(small, account_id=account, packages=4)
    assert balance_of(small, account).available == 4000


# --- idempotency ----------------------------------------------------------------------


def test_the_same_key_returns_the_same_invoice_and_grants_once(ctx: Context) -> None:
    """A retried request (same Idempotency-Key) charges nothing more and grants nothing more."""
    gateway = RecordingGateway()
    ctx = with_gateway(ctx, gateway)
    account = new_account(ctx)
    first = purchases.purchase(ctx, account_id=account, packages=2, key="order-17")
    counts = row_counts(ctx)
    again = purchases.purchase(ctx, account_id=account, packages=2, key="order-17")
    assert again.id == first.id
    assert again.status == InvoiceStatus.PAID
    assert row_counts(ctx) == counts, "a retry wrote something"
    assert len(gateway.requests) == 1, "a retry charged the card again"
    assert balance_of(ctx, account).available == 2 * PACKAGE
    assert subscription_of(ctx, account).quantity == 2


def test_the_same_key_for_another_purchase_is_refused(ctx: Context) -> None:
    """One key, one purchase: reusing it for other packages is a conflict, nothing written."""
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=2, key="order-17")
    counts = row_counts(ctx)
    with pytest.raises(IdempotencyConflict):
        purchases.purchase(ctx, account_id=account, packages=3, key="order-17")
    assert row_counts(ctx) == counts
    assert balance_of(ctx, account).available == 2 * PACKAGE


def test_keys_belong_to_one_account(ctx: Context) -> None:
    """Two accounts may use the same key; each gets its own invoice."""
    one = new_account(ctx, email="one@example.com")
    two = new_account(ctx, email="two@example.com")
    a = purchases.purchase(ctx, account_id=one, packages=1, key="k")
    b = purchases.purchase(ctx, account_id=two, packages=1, key="k")
    assert a.id != b.id
    assert balance_of(ctx, two).available == PACKAGE


# --- refused input ----------------------------------------------------------------------


@pytest.mark.parametrize("packages", [0, -1, 1001, 1.5, "2", True, None])
def test_bad_package_counts_are_refused_and_nothing_is_written(
    ctx: Context, packages: object
) -> None:
    """Only whole numbers from 1 to 1,000 are packages; anything else writes and charges nothing."""
    gateway = RecordingGateway()
    ctx = with_gateway(ctx, gateway)
    account = new_account(ctx)
    counts = row_counts(ctx)
    with pytest.raises(InvalidInput):
        purchases.purchase(ctx, account_id=account, packages=packages)  # type: ignore[arg-type]
    assert row_counts(ctx) == counts
    assert gateway.requests == []
    assert subscription_of(ctx, account).quantity == 0


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there"])
def test_bad_idempotency_keys_are_refused(ctx: Context, key: str) -> None:
    """Keys are 1 to 200 printable characters."""
    account = new_account(ctx)
    counts = row_counts(ctx)
    with pytest.raises(InvalidInput):
        purchases.purchase(ctx, account_id=account, packages=1, key=key)
    assert row_counts(ctx) == counts


def test_buying_for_an_unknown_account_is_not_found(ctx: Context) -> None:
    """No invoice for an account that does not exist."""
    with pytest.raises(NotFound):
        purchases.purchase(ctx, account_id=999_999, packages=1)


def test_the_largest_purchase_is_accepted(ctx: Context) -> None:
    """1,000 packages is the upper bound and is accepted."""
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1000)
    assert balance_of(ctx, account).available == 1000 * PACKAGE


# --- payment outcomes -------------------------------------------------------------------


def test_a_declined_payment_grants_nothing(ctx: Context) -> None:
    """A declined card: PaymentFailed, no tokens, no quantity, no receipt; no charge on retry."""
    gateway = RecordingGateway(ChargeStatus.FAILED)
    ctx = with_gateway(ctx, gateway)
    account = new_account(ctx)
    with pytest.raises(PaymentFailed) as declined:
        purchases.purchase(ctx, account_id=account, packages=3, key="order-1")
    assert declined.value.code == "payment_failed"
    with ctx.db.read() as session:
        (invoice,) = session.scalars(select(Invoice)).all()
    assert invoice.status == InvoiceStatus.FAILED
    assert invoice.failure_reason == "card declined"
    assert balance_of(ctx, account).available == 0
    assert balance_of(ctx, account).period_granted == 0
    assert subscription_of(ctx, account).quantity == 0
    assert purchase_grants(ctx, account) == []
    assert outbox(ctx, "purchase_receipt") == []
    # retrying the declined order does not charge again; a new order may succeed
    with pytest.raises(PaymentFailed):
        purchases.purchase(ctx, account_id=account, packages=3, key="order-1")
    assert len(gateway.requests) == 1
    purchases.purchase(ctx, account_id=account, packages=3, key="order-2")
    assert balance_of(ctx, account).available == 3 * PACKAGE
    assert_ledger_clean(ctx)


def test_a_pending_payment_grants_only_when_confirmed_and_only_once(ctx: Context) -> None:
    """A payment confirmed later (bank transfer) grants on confirmation, once."""
    ctx = with_gateway(ctx, ManualGateway(auto_approve=False))
    account = new_account(ctx)
    invoice = purchases.purchase(ctx, account_id=account, packages=2, key="wire-1")
    assert invoice.status == InvoiceStatus.PENDING
    assert balance_of(ctx, account).available == 0
    assert subscription_of(ctx, account).quantity == 0
    assert outbox(ctx, "purchase_receipt") == []
    # asking again while it is pending neither grants nor creates another invoice
    assert purchases.purchase(ctx, account_id=account, packages=2, key="wire-1").id == invoice.id

    ctx.clock.advance(hours=5)
    for _ in range(2):  # the operator clicks "mark paid" twice
        with ctx.db.uow() as uow:
            paid = charges.confirm_payment(
                uow.session,
                account_id=account,
                invoice_id=invoice.id,
                now=ctx.clock.now(),
                reference="bank:42",
            )
            uow.commit()
        assert paid.status == InvoiceStatus.PAID
    balance = balance_of(ctx, account)
    assert (balance.available, balance.period_granted) == (2 * PACKAGE, 2 * PACKAGE)
    assert subscription_of(ctx, account).quantity == 2
    assert len(purchase_grants(ctx, account)) == 1
    assert len(outbox(ctx, "purchase_receipt")) == 1
    assert_ledger_clean(ctx)


def test_confirming_another_accounts_invoice_is_not_found(ctx: Context) -> None:
    """An invoice can only be confirmed for the account it belongs to."""
    ctx = with_gateway(ctx, ManualGateway(auto_approve=False))
    owner = new_account(ctx, email="one@example.com")
    other = new_account(ctx, email="two@example.com")
    invoice = purchases.purchase(ctx, account_id=owner, packages=1)
    with ctx.db.uow() as uow, pytest.raises(NotFound):
        charges.confirm_payment(
            uow.session, account_id=other, invoice_id=invoice.id, now=ctx.clock.now()
        )
    assert balance_of(ctx, owner).available == 0
    assert balance_of(ctx, other).available == 0


# --- cancelling and buying again --------------------------------------------------------


def test_buying_after_cancelling_starts_over_with_just_the_new_packages(ctx: Context) -> None:
    """After cancelling, a purchase reactivates the subscription with only the new packages."""
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=3)
    with ctx.db.uow() as uow:
        subscriptions.cancel(uow.session, account_id=account, now=ctx.clock.now())
        uow.commit()
    assert subscription_of(ctx, account).renewing_quantity == 0
    purchases.purchase(ctx, account_id=account, packages=2)
    subscription = subscription_of(ctx, account)
    assert subscription.status == "active"
    assert subscription.cancelled_at is None
    assert (subscription.quantity, subscription.renewing_quantity) == (2, 2)
    # the tokens of both purchases are this month's to use
    assert balance_of(ctx, account).available == 5 * PACKAGE
    # and the next renewal charges the two new packages only
    ctx.clock.set(periods.starts_at("2026-12", "UTC"))
    renewals.run_renewals(ctx)
    with ctx.db.read() as session:
        renewal = session.scalars(select(Invoice).where(Invoice.kind == InvoiceKind.RENEWAL)).one()
    assert renewal.packages == 2
    assert balance_of(ctx, account).available == 2 * PACKAGE
    assert_ledger_clean(ctx)


# --- the low-balance warning ------------------------------------------------------------


def test_a_purchase_rearms_the_low_balance_warning(ctx: Context) -> None:
    """Below 20% → one warning; a purchase lifts the balance → the next drop warns again."""
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1)  # limit 5,000
    spend(ctx, account, 4000, "chat-1")  # 1,000 left: exactly 20%, not low
    assert outbox(ctx, "low_balance") == []
    spend(ctx, account, 1, "chat-2")  # 999: low
    assert len(outbox(ctx, "low_balance")) == 1
    spend(ctx, account, 100, "chat-3")  # still low: no second email
    assert len(outbox(ctx, "low_balance")) == 1
    assert balance_of(ctx, account).low_armed is False

    purchases.purchase(ctx, account_id=account, packages=1)  # 5,899 of 10,000
    balance = balance_of(ctx, account)
    assert (balance.balance, balance.period_granted) == (5899, 10_000)
    assert balance.low_armed is True
    assert len(outbox(ctx, "low_balance")) == 1

    spend(ctx, account, 3900, "chat-4")  # 1,999 of 10,000: low again
    warnings = outbox(ctx, "low_balance")
    assert len(warnings) == 2
    assert json.loads(warnings[1].context)["balance"] == 1999
