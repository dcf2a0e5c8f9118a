"""Refunds made in Stripe's dashboard reach the ledger (``charge.refunded``), on SQLite and
PostgreSQL.

The fake Stripe refunds as the dashboard does and posts its signed events to the app on
loopback. Promises guarded here:

- a full refund does what ``chatmeter invoices refund`` does (the invoice's unspent
  tokens removed, a purchase's packages leave the subscription, one email) without
  asking Stripe to refund again; the CLI then refuses the invoice;
- one refund is written once, whoever tells it first and however often: the CLI then
  its event, the event during the CLI's refund, five deliveries at once, a new event
  for the same refund;
- only Stripe's word counts, and only for the very payment of one of our invoices by
  its account's customer: a payload claiming a refund Stripe has not made, or a charge
  of another customer naming our invoice, changes nothing;
- a partial refund removes the same share of the invoice's paid tokens, rounded down,
  from what is still unspent; the refund of the rest completes it.

``ledger verify`` is clean after each.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
import stripe
from sqlalchemy import select

from chatmeter.billing import cards, purchases, refunds
from chatmeter.billing.gateways import RefundResult
from chatmeter.billing.models import Invoice, InvoiceStatus
from chatmeter.billing.stripe_gateway import StripeGateway
from chatmeter.context import Context
from chatmeter.errors import Conflict
from chatmeter.ledger.models import EntryKind, Grant, LedgerEntry
from chatmeter.notifications.models import OutboxMessage
from tests.support.accounts import balance_of, new_account, spend, subscription_of
from tests.support.fake_stripe import FakeStripe
from tests.support.ledger import assert_ledger_clean
from tests.support.live import LiveServer
from tests.support.payments import give_card, signed
from tests.webhooks.support import events_of

PACKAGE = 5000
PRICE = 900  # cents per package at the default price


@pytest.fixture
def webhook(stripe_ctx: Context, fake: FakeStripe) -> Iterator[str]:
    """The app on loopback, Stripe's webhooks pointed at it; the endpoint's URL."""
    from chatmeter.web.app import create_app

    with LiveServer(create_app(stripe_ctx)) as server:
        fake.webhook_url = f"{server.url}/webhooks/stripe"
        yield fake.webhook_url
        fake.webhook_url = None


def bought(ctx: Context, fake: FakeStripe, packages: int = 2) -> Invoice:
    """A returning customer's purchase, paid on the saved card; its events delivered."""
    account = new_account(ctx)
    give_card(ctx, fake, account)
    invoice = purchases.purchase(ctx, account_id=account, packages=packages)
    assert invoice.status == InvoiceStatus.PAID and invoice.gateway_reference
    assert all(d.ok for d in fake.wait_for_deliveries())
    return invoice


def post(url: str, fake: FakeStripe, event: dict[str, object]) -> str:
    """One signed delivery of the event, as Stripe posts it; the app's outcome."""
    body, headers = signed(fake, event)
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["outcome"])


def invoice_of(ctx: Context, invoice_id: int) -> Invoice:
    with ctx.db.read() as session:
        found = session.get(Invoice, invoice_id)
        assert found is not None
        return found


def removals(ctx: Context, invoice_id: int) -> list[int]:
    """The tokens each ledger entry took back from the invoice's grants."""
    with ctx.db.read() as session:
        entries = session.scalars(
            select(LedgerEntry)
            .join(Grant, Grant.id == LedgerEntry.grant_id)
            .where(Grant.invoice_id == invoice_id, LedgerEntry.kind == EntryKind.DEBIT)
            .order_by(LedgerEntry.id)
        )
        return [-entry.available_delta for entry in entries]


def refund_emails(ctx: Context) -> list[dict[str, object]]:
    with ctx.db.read() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "refund_issued")
            .order_by(OutboxMessage.id)
        )
        return [json.loads(row.context) for row in rows]


def refunds_asked(fake: FakeStripe) -> list[str | None]:
    """The idempotency keys of the refunds Chatmeter asked Stripe for."""
    return [key for method, path, _, key in fake.requests if path == "/v1/refunds"]


def charge_of(fake: FakeStripe, invoice: Invoice) -> str:
    return str(fake.get(str(invoice.gateway_reference))["latest_charge"])


# --- a full refund ---------------------------------------------------------------------


def test_a_full_refund_in_the_dashboard_does_what_the_cli_does_and_the_cli_then_refuses(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    invoice = bought(stripe_ctx, fake)
    account = invoice.account_id
    spend(stripe_ctx, account, 3000, "before the refund")

    fake.refund_from_dashboard(str(invoice.gateway_reference))
    delivered = fake.wait_for_deliveries()

    assert [d.type for d in delivered[-2:]] == ["refund.created", "charge.refunded"]
    assert all(d.ok for d in delivered)
    refunded = invoice_of(stripe_ctx, invoice.id)
    assert (refunded.status, refunded.refunded_cents) == (InvoiceStatus.PAID, 2 * PRICE)
    assert refunded.refunded_at == stripe_ctx.clock.now()
    assert removals(stripe_ctx, invoice.id) == [2 * PACKAGE - 3000]
    assert balance_of(stripe_ctx, account).available == 0
    assert subscription_of(stripe_ctx, account).quantity == 0  # not renewed on the 1st
    (email,) = refund_emails(stripe_ctx)
    assert (email["amount"], email["in_full"], email["tokens_removed"]) == ("18.00", True, 7000)
    (event,) = events_of(stripe_ctx, "invoice.refunded")  # the account's webhooks hear it
    assert event["account_id"] == account
    assert (event["data"]["amount"], event["data"]["in_full"]) == ("18.00", True)
    assert (event["data"]["tokens_removed"], event["data"]["balance"]) == (7000, 0)
    assert event["data"]["invoice"]["id"] == invoice.id
    assert event["data"]["invoice"]["refunded"] == event["data"]["invoice"]["amount"] == "18.00"
    assert refunds_asked(fake) == []  # Stripe had refunded it: nothing asked again
    assert_ledger_clean(stripe_ctx)

    with pytest.raises(Conflict, match="already refunded"):
        refunds.refund(stripe_ctx, invoice_id=invoice.id, account_id=account)
    # The same refund told again under a new event id: applied, and nothing changes.
    again = fake.event("charge.refunded", fake.get(charge_of(fake, invoice)))
    assert post(webhook, fake, again) == "applied"

    assert refunds_asked(fake) == []
    assert removals(stripe_ctx, invoice.id) == [2 * PACKAGE - 3000]
    assert len(refund_emails(stripe_ctx)) == 1
    assert len(events_of(stripe_ctx, "invoice.refunded")) == 1  # told once
    assert_ledger_clean(stripe_ctx)


def test_the_event_of_a_cli_refund_changes_nothing_more(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    invoice = bought(stripe_ctx, fake, packages=1)
    fake.webhook_url = None  # Stripe's events wait until the CLI's refund is written

    done = refunds.refund(stripe_ctx, invoice_id=invoice.id, account_id=invoice.account_id)
    (event,) = fake.events("charge.refunded")

    assert post(webhook, fake, event) == "applied"
    assert (done.amount_cents, done.tokens_removed) == (PRICE, PACKAGE)
    assert refunds_asked(fake) == [f"invoice:{invoice.id}:refund"]
    assert removals(stripe_ctx, invoice.id) == [PACKAGE]
    assert len(refund_emails(stripe_ctx)) == 1
    assert invoice_of(stripe_ctx, invoice.id).refunded_cents == PRICE
    assert_ledger_clean(stripe_ctx)


class EventFirst:
    """The Stripe gateway whose refund's webhook is applied before its answer returns."""

    def __init__(self, inner: StripeGateway, fake: FakeStripe) -> None:
        self.inner, self.fake = inner, fake
        self.name, self.hosted_checkout = inner.name, inner.hosted_checkout

    def refund(self, **kwargs: object) -> RefundResult:
        result = self.inner.refund(**kwargs)  # type: ignore[arg-type]
        assert all(d.ok for d in self.fake.wait_for_deliveries())
        return result


def test_the_event_arriving_during_a_cli_refund_is_written_once(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    invoice = bought(stripe_ctx, fake, packages=1)
    assert isinstance(stripe_ctx.gateway, StripeGateway)
    operator = Context(
        settings=stripe_ctx.settings,
        db=stripe_ctx.db,
        clock=stripe_ctx.clock,
        gateway=EventFirst(stripe_ctx.gateway, fake),  # type: ignore[arg-type]
    )

    # Stripe refunded it once; the webhook wrote it before the CLI could.
    with pytest.raises(Conflict, match="already refunded"):
        refunds.refund(operator, invoice_id=invoice.id, account_id=invoice.account_id)

    assert refunds_asked(fake) == [f"invoice:{invoice.id}:refund"]
    assert invoice_of(stripe_ctx, invoice.id).refunded_cents == PRICE
    assert removals(stripe_ctx, invoice.id) == [PACKAGE]
    assert len(refund_emails(stripe_ctx)) == 1
    assert_ledger_clean(stripe_ctx)


def test_the_refund_event_five_times_at_once_is_written_once(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    invoice = bought(stripe_ctx, fake)
    fake.webhook_url = None
    fake.refund_from_dashboard(str(invoice.gateway_reference))
    (event,) = fake.events("charge.refunded")
    start = threading.Barrier(5)
    outcomes: list[str] = []

    def deliver() -> None:
        start.wait(timeout=30)
        outcomes.append(post(webhook, fake, event))

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 4
    assert removals(stripe_ctx, invoice.id) == [2 * PACKAGE]
    assert len(refund_emails(stripe_ctx)) == 1
    assert balance_of(stripe_ctx, invoice.account_id).available == 0
    assert_ledger_clean(stripe_ctx)


# --- Stripe's word, for our payment only ------------------------------------------------


def test_a_payload_claiming_a_refund_stripe_has_not_made_changes_nothing(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    invoice = bought(stripe_ctx, fake)
    charge = fake.get(charge_of(fake, invoice))
    forged = fake.event(
        "charge.refunded", {**charge, "amount_refunded": charge["amount"], "refunded": True}
    )

    assert post(webhook, fake, forged) == "applied"

    assert invoice_of(stripe_ctx, invoice.id).refunded_cents == 0
    assert removals(stripe_ctx, invoice.id) == []
    assert balance_of(stripe_ctx, invoice.account_id).available == 2 * PACKAGE
    assert refund_emails(stripe_ctx) == []
    assert_ledger_clean(stripe_ctx)


def test_a_refunded_charge_of_another_customer_naming_our_invoice_changes_nothing(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    """A payment made outside Chatmeter, by another account's customer, whose metadata
    names this account's invoice, refunded in the dashboard."""
    invoice = bought(stripe_ctx, fake)
    other = new_account(stripe_ctx, email="other@example.com")
    give_card(stripe_ctx, fake, other)
    with stripe_ctx.db.read() as session:
        customer = cards.customer_reference(session, account_id=other, gateway="stripe")
    assert customer is not None
    client = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.url})
    theirs = client.v1.payment_intents.create(
        params={
            "amount": 2 * PRICE,
            "currency": "eur",
            "customer": customer,
            "payment_method": fake.save_card(customer),
            "off_session": True,
            "confirm": True,
            "metadata": {"invoice_id": str(invoice.id), "account_id": str(invoice.account_id)},
        }
    )

    fake.refund_from_dashboard(theirs.id)
    assert all(d.ok for d in fake.wait_for_deliveries())

    assert invoice_of(stripe_ctx, invoice.id).refunded_cents == 0
    assert removals(stripe_ctx, invoice.id) == []
    assert balance_of(stripe_ctx, invoice.account_id).available == 2 * PACKAGE
    assert subscription_of(stripe_ctx, invoice.account_id).quantity == 2
    assert refund_emails(stripe_ctx) == []
    assert_ledger_clean(stripe_ctx)


# --- a partial refund -----------------------------------------------------------------


def test_a_partial_refund_takes_back_the_same_share_of_the_tokens_and_the_rest_completes_it(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    invoice = bought(stripe_ctx, fake)  # 18.00 EUR for 10,000 tokens
    account, intent = invoice.account_id, str(invoice.gateway_reference)

    # A quarter back: 2,500 tokens leave the balance; the packages stay subscribed.
    fake.refund_from_dashboard(intent, amount=450)
    fake.wait_for_deliveries()

    part = invoice_of(stripe_ctx, invoice.id)
    assert (part.refunded_cents, part.refunded_at) == (450, stripe_ctx.clock.now())
    assert removals(stripe_ctx, invoice.id) == [2500]
    assert balance_of(stripe_ctx, account).available == 2 * PACKAGE - 2500
    assert subscription_of(stripe_ctx, account).quantity == 2
    (first,) = refund_emails(stripe_ctx)
    assert (first["amount"], first["refunded_total"], first["in_full"]) == ("4.50", "4.50", False)
    assert (first["tokens_share"], first["tokens_removed"]) == (2500, 2500)
    assert_ledger_clean(stripe_ctx)

    # Half more (three quarters in all), after most tokens were spent: of its share of
    # 5,000 tokens only the 1,500 still unspent can go, and the balance stops at zero.
    spend(stripe_ctx, account, 6000, "after the first refund")
    fake.refund_from_dashboard(intent, amount=900)
    fake.wait_for_deliveries()

    assert invoice_of(stripe_ctx, invoice.id).refunded_cents == 1350
    assert removals(stripe_ctx, invoice.id) == [2500, 1500]
    assert balance_of(stripe_ctx, account).available == 0
    second = refund_emails(stripe_ctx)[-1]
    assert (second["amount"], second["refunded_total"]) == ("9.00", "13.50")
    assert (second["tokens_share"], second["tokens_removed"]) == (5000, 1500)
    assert_ledger_clean(stripe_ctx)

    # The operator refunds the rest: Stripe is asked for what is left, under a key of
    # its own; the invoice is refunded in full and its packages leave the subscription.
    fake.webhook_url = None  # its event comes after it is written (see above for the race)
    done = refunds.refund(stripe_ctx, invoice_id=invoice.id, account_id=account)
    assert post(webhook, fake, fake.events("charge.refunded")[-1]) == "applied"

    assert (done.amount_cents, done.tokens_removed) == (450, 0)
    assert refunds_asked(fake) == [f"invoice:{invoice.id}:refund:after:1350"]
    assert [r[2]["amount"] for r in fake.requests if r[1] == "/v1/refunds"] == ["450"]
    full = invoice_of(stripe_ctx, invoice.id)
    assert full.refunded_cents == 2 * PRICE and refunds.fully_refunded(full)
    assert subscription_of(stripe_ctx, account).quantity == 0
    assert removals(stripe_ctx, invoice.id) == [2500, 1500]
    last = refund_emails(stripe_ctx)[-1]
    assert (last["amount"], last["refunded_total"], last["in_full"]) == ("4.50", "18.00", True)
    assert len(refund_emails(stripe_ctx)) == 3
    # The webhooks heard each refund once, with the email's figures.
    fields = ("amount", "refunded", "in_full", "tokens_share", "tokens_removed")
    told = [
        tuple((e["data"] | {"refunded": e["data"]["invoice"]["refunded"]})[f] for f in fields)
        for e in events_of(stripe_ctx, "invoice.refunded")
    ]
    assert told == [
        ("4.50", "4.50", False, 2500, 2500),
        ("9.00", "13.50", False, 5000, 1500),
        ("4.50", "18.00", True, 0, 0),
    ]
    with pytest.raises(Conflict, match="already refunded"):
        refunds.refund(stripe_ctx, invoice_id=invoice.id, account_id=account)
    assert_ledger_clean(stripe_ctx)


def test_partial_refunds_round_each_share_down_and_add_up_to_the_whole(
    stripe_ctx: Context, fake: FakeStripe, webhook: str
) -> None:
    """Each refund takes the share of the total refunded so far, less what was taken
    before: the cents of a tiny refund are never lost to rounding."""
    invoice = bought(stripe_ctx, fake, packages=1)  # 9.00 EUR for 5,000 tokens
    intent = str(invoice.gateway_reference)

    for cents in (1, 1, 7, 891):
        fake.refund_from_dashboard(intent, amount=cents)
        fake.wait_for_deliveries()

    # 5,000 × 1/900 = 5.55 → 5; × 2/900 = 11.1 → 11 (6 more); × 9/900 = 50 (39 more); the rest.
    assert removals(stripe_ctx, invoice.id) == [5, 6, 39, 4950]
    assert sum(removals(stripe_ctx, invoice.id)) == PACKAGE
    assert refunds.fully_refunded(invoice_of(stripe_ctx, invoice.id))
    assert [e["tokens_removed"] for e in refund_emails(stripe_ctx)] == [5, 6, 39, 4950]
    assert balance_of(stripe_ctx, invoice.account_id).available == 0
    assert_ledger_clean(stripe_ctx)
