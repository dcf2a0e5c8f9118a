"""The contract every payment gateway keeps, run against the manual and the Stripe gateway.

- a charge of a returning customer succeeds at once, with a reference;
- one idempotency key is one charge: asked twice, one payment and the same reference;
- a refund under one key is one refund;
- through the billing engine: a purchase grants its tokens once, the renewal on the 1st
  charges and grants once however often the job runs, and a refund removes the unspent
  tokens; the ledger is clean after each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from chatmeter.billing import cards, purchases, refunds, renewals
from chatmeter.billing.gateways import ChargeRequest, ChargeStatus
from chatmeter.billing.models import Invoice
from chatmeter.context import Context
from tests.support.accounts import balance_of, new_account, spend
from tests.support.context import derived
from tests.support.fake_stripe import FakeStripe
from tests.support.ledger import assert_ledger_clean
from tests.support.payments import give_card, with_stripe

PACKAGE = 5000


@dataclass
class Processor:
    """A gateway under test, and what the processor behind it recorded."""

    ctx: Context
    fake: FakeStripe | None

    def payments(self) -> int | None:
        """Payments really made (the manual gateway's are made by hand: None)."""
        return None if self.fake is None else len(self.fake.payment_intents_created())

    def refunds(self) -> int | None:
        if self.fake is None:
            return None
        return len({r[3] for r in self.fake.requests if r[1] == "/v1/refunds"})

    def returning_customer(self, account_id: int) -> ChargeRequest:
        """A charge request for the account, with its saved card where the gateway keeps one."""
        customer = card = None
        if self.fake is not None:
            give_card(self.ctx, self.fake, account_id)
            with self.ctx.db.read() as session:
                saved = cards.saved_card(session, account_id=account_id, gateway="stripe")
                assert saved is not None
                customer, card = saved.customer_reference, saved.card_reference
        return ChargeRequest(
            invoice_id=41,
            account_id=account_id,
            amount_cents=900,
            currency="EUR",
            description="contract",
            idempotency_key="invoice:41:attempt:1",
            customer=customer,
            card=card,
        )


@pytest.fixture(params=["manual", "stripe"])
def processor(request: pytest.FixtureRequest, ctx: Context) -> Iterator[Processor]:
    if request.param == "manual":
        yield Processor(derived(ctx), None)  # approves at once, as in development
        return
    with FakeStripe() as fake:
        yield Processor(with_stripe(ctx, fake), fake)


def test_a_returning_customers_charge_succeeds_once_per_key(processor: Processor) -> None:
    account = new_account(processor.ctx)
    request = processor.returning_customer(account)
    gateway = processor.ctx.gateway

    first = gateway.charge(request)
    again = gateway.charge(request)

    assert first.status == again.status == ChargeStatus.SUCCEEDED
    assert first.reference is not None and first.reference == again.reference
    assert processor.payments() in (None, 1)


def test_a_refund_under_one_key_is_one_refund(processor: Processor) -> None:
    account = new_account(processor.ctx)
    request = processor.returning_customer(account)
    paid = processor.ctx.gateway.charge(request)

    first = processor.ctx.gateway.refund(
        reference=paid.reference, amount_cents=900, idempotency_key="invoice:41:refund"
    )
    again = processor.ctx.gateway.refund(
        reference=paid.reference, amount_cents=900, idempotency_key="invoice:41:refund"
    )

    assert first.succeeded and again.succeeded
    assert first.reference == again.reference
    assert processor.refunds() in (None, 1)


def test_the_billing_engine_buys_renews_and_refunds_through_it(processor: Processor) -> None:
    ctx = processor.ctx
    account = new_account(ctx)
    processor.returning_customer(account)

    invoice = purchases.purchase(ctx, account_id=account, packages=2)
    assert invoice.status == "paid"
    assert balance_of(ctx, account).available == 2 * PACKAGE
    spend(ctx, account, 1500, "november")

    ctx.clock.set(dt.datetime(2026, 12, 1, 0, 0, 5, tzinfo=dt.UTC))
    for _ in range(3):
        renewals.run_renewals(ctx)
    assert balance_of(ctx, account).available == 2 * PACKAGE
    assert processor.payments() in (None, 2)

    (renewal,) = [i for i in _invoices(ctx, account) if i.kind == "renewal"]
    spend(ctx, account, 4000, "december")
    done = refunds.refund(ctx, invoice_id=renewal.id, account_id=account)

    assert done.tokens_removed == 2 * PACKAGE - 4000
    assert balance_of(ctx, account).available == 0
    assert processor.refunds() in (None, 1)
    assert_ledger_clean(ctx)


def _invoices(ctx: Context, account_id: int) -> list[Invoice]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(Invoice).where(Invoice.account_id == account_id).order_by(Invoice.id)
            )
        )
