"""Taking money through Stripe (``CHATMETER_PAYMENT_GATEWAY=stripe``), on SQLite and PostgreSQL.

The real ``stripe`` library talks to the fake Stripe API on loopback; events the fake
creates are posted to the app's ``/webhooks/stripe`` exactly as Stripe signs them.

Promises guarded here:

- an account's first purchase goes through Stripe Checkout: the invoice is pending and
  grants nothing until Stripe's webhook confirms it; then the tokens come once and the
  card is kept for later;
- later purchases charge the saved card off-session, at once, under the invoice's
  idempotency key: an attempt whose answer was lost is repeated under the same key
  and Stripe charges once;
- a declined card grants nothing; a card that asks for 3-D Secure leaves the invoice
  pending and emails a link that opens Stripe's page for that invoice;
- leaving the payment page voids the purchase and closes the page;
- a new card replaces the saved one through Stripe's page in setup mode;
- a refund goes back through Stripe and removes the invoice's unspent tokens: never
  below zero, never twice.
"""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.billing import cards, charges, checkout, purchases, refunds
from chatmeter.billing.gateways import ChargeRequest, ChargeResult
from chatmeter.billing.models import Invoice, InvoiceStatus
from chatmeter.billing.stripe_gateway import StripeGateway
from chatmeter.context import Context
from chatmeter.errors import Conflict, PaymentFailed
from chatmeter.ledger.models import EntryKind, LedgerEntry
from chatmeter.notifications.models import OutboxMessage
from tests.support.accounts import balance_of, new_account, spend, subscription_of
from tests.support.fake_stripe import FakeStripe
from tests.support.ledger import assert_ledger_clean
from tests.support.payments import give_card, signed

PACKAGE = 5000
PRICE = 900  # cents per package at the default price


def post_events(stripe_app: TestClient, fake: FakeStripe, *types: str) -> list[str]:
    """Post every event the fake made so far (or those of ``types``) as Stripe would."""
    outcomes = []
    for event in fake.events():
        if types and event["type"] not in types:
            continue
        body, headers = signed(fake, event)
        response = stripe_app.post("/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 200, response.text
        outcomes.append(response.json()["outcome"])
    return outcomes


def invoice_of(ctx: Context, invoice_id: int) -> Invoice:
    with ctx.db.read() as session:
        found = session.get(Invoice, invoice_id)
        assert found is not None
        return found


def emails(ctx: Context, kind: str) -> list[dict[str, object]]:
    with ctx.db.read() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind))
        return [json.loads(row.context) for row in rows]


def session_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


# --- the first purchase: Stripe Checkout --------------------------------------------


def test_the_first_purchase_is_paid_on_stripes_page_and_granted_by_its_webhook(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    account = new_account(stripe_ctx)
    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=2, key="first")

    assert bought.pay_url is not None and bought.pay_url.startswith(f"{fake.url}/pay/cs_test_")
    assert bought.invoice.status == InvoiceStatus.PENDING
    assert balance_of(stripe_ctx, account).available == 0  # nothing before Stripe confirms
    page = fake.get(session_id(bought.pay_url))
    assert (page["amount_total"], page["currency"], page["mode"]) == (2 * PRICE, "eur", "payment")
    assert page["metadata"]["invoice_id"] == str(bought.invoice.id)

    # The same key again (a double click) opens the same page and buys nothing more.
    again = purchases.start_purchase(stripe_ctx, account_id=account, packages=2, key="first")
    assert (again.invoice.id, again.pay_url) == (bought.invoice.id, bought.pay_url)

    assert fake.complete_checkout(session_id(bought.pay_url), "4242424242424242") is None
    assert "applied" in post_events(stripe_app, fake)

    invoice = invoice_of(stripe_ctx, bought.invoice.id)
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.gateway_reference == fake.get(session_id(bought.pay_url))["payment_intent"]
    assert balance_of(stripe_ctx, account).available == 2 * PACKAGE
    assert subscription_of(stripe_ctx, account).quantity == 2
    with stripe_ctx.db.read() as session:
        card = cards.saved_card(session, account_id=account, gateway="stripe")
        assert card is not None
        assert (card.card_brand, card.card_last4) == ("visa", "4242")
    assert len(emails(stripe_ctx, "purchase_receipt")) == 1
    assert_ledger_clean(stripe_ctx)


def test_leaving_the_payment_page_voids_the_purchase_and_closes_the_page(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    account = new_account(stripe_ctx)
    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=1)
    assert bought.pay_url is not None

    left = checkout.abandon(stripe_ctx, account_id=account, invoice_id=bought.invoice.id)

    assert left.status == InvoiceStatus.VOID
    assert fake.get(session_id(bought.pay_url))["status"] == "expired"
    assert fake.complete_checkout(session_id(bought.pay_url), "4242424242424242") is not None
    assert balance_of(stripe_ctx, account).available == 0


def test_another_accounts_invoice_is_not_found_on_the_payment_pages(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    alice = new_account(stripe_ctx, email="alice@example.com")
    bob = new_account(stripe_ctx, email="bob@example.com")
    bought = purchases.start_purchase(stripe_ctx, account_id=alice, packages=1)
    with pytest.raises(Exception) as found:
        checkout.pay_on_page(stripe_ctx, account_id=bob, invoice_id=bought.invoice.id)
    assert getattr(found.value, "status_code", None) == 404
    with pytest.raises(Exception) as found:
        checkout.abandon(stripe_ctx, account_id=bob, invoice_id=bought.invoice.id)
    assert getattr(found.value, "status_code", None) == 404
    assert invoice_of(stripe_ctx, bought.invoice.id).status == InvoiceStatus.PENDING


# --- later charges on the saved card ---------------------------------------------------


def test_a_later_purchase_charges_the_saved_card_off_session_at_once(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    account = new_account(stripe_ctx)
    customer = give_card(stripe_ctx, fake, account)

    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=3)

    assert bought.pay_url is None
    assert bought.invoice.status == InvoiceStatus.PAID
    assert balance_of(stripe_ctx, account).available == 3 * PACKAGE
    (intent,) = fake.payment_intents_created()
    assert (intent["amount"], intent["customer"], intent["status"]) == (
        3 * PRICE,
        customer,
        "succeeded",
    )
    assert intent["metadata"]["invoice_id"] == str(bought.invoice.id)
    keys = [key for method, path, _, key in fake.requests if path == "/v1/payment_intents"]
    assert keys == [f"invoice:{bought.invoice.id}:attempt:1"]
    assert_ledger_clean(stripe_ctx)


class LostAnswer:
    """The Stripe gateway whose first answer is lost on the way back (Stripe did charge)."""

    def __init__(self, inner: StripeGateway) -> None:
        self.inner = inner
        self.name = inner.name
        self.hosted_checkout = inner.hosted_checkout
        self.lost = 0

    def charge(self, request: ChargeRequest) -> ChargeResult:
        result = self.inner.charge(request)
        if self.lost == 0:
            self.lost += 1
            raise ConnectionError("the connection dropped before Stripe's answer arrived")
        return result

    def refund(self, **kwargs: object) -> object:
        return self.inner.refund(**kwargs)  # type: ignore[arg-type]


def test_an_attempt_whose_answer_was_lost_is_repeated_under_its_key_and_charged_once(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account)
    assert isinstance(stripe_ctx.gateway, StripeGateway)
    flaky = Context(
        settings=stripe_ctx.settings,
        db=stripe_ctx.db,
        clock=stripe_ctx.clock,
        gateway=LostAnswer(stripe_ctx.gateway),  # type: ignore[arg-type]
    )
    with pytest.raises(ConnectionError):
        purchases.purchase(flaky, account_id=account, packages=1, key="lost")
    (invoice,) = _invoices(stripe_ctx, account)
    assert invoice.status == InvoiceStatus.OPEN and balance_of(stripe_ctx, account).available == 0

    stripe_ctx.clock.advance(minutes=11)  # the attempt's lease ran out: the retry job's turn
    paid = charges.charge(flaky, invoice.id)

    assert paid.status == InvoiceStatus.PAID
    assert len(fake.payment_intents_created()) == 1  # Stripe replayed the first answer
    keys = [key for _, path, _, key in fake.requests if path == "/v1/payment_intents"]
    assert keys == [f"invoice:{invoice.id}:attempt:1"] * 2
    assert paid.attempts == 1
    assert balance_of(stripe_ctx, account).available == PACKAGE
    assert_ledger_clean(stripe_ctx)


def test_a_declined_saved_card_grants_nothing(stripe_ctx: Context, fake: FakeStripe) -> None:
    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account, number="4000000000000341")  # attaches, then declines

    with pytest.raises(PaymentFailed, match="declined"):
        purchases.purchase(stripe_ctx, account_id=account, packages=1)

    (invoice,) = _invoices(stripe_ctx, account)
    assert invoice.status == InvoiceStatus.FAILED
    assert balance_of(stripe_ctx, account).available == 0
    assert subscription_of(stripe_ctx, account).quantity == 0


def test_a_card_asking_for_3d_secure_leaves_the_invoice_pending_and_emails_a_link(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account, number="4000002760003184")

    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=1)

    assert bought.invoice.status == InvoiceStatus.PENDING
    assert balance_of(stripe_ctx, account).available == 0
    (email,) = emails(stripe_ctx, "payment_action_required")
    assert (
        email["pay_url"] == f"http://127.0.0.1:8000/panel/billing/invoices/{bought.invoice.id}/pay"
    )
    # The failed off-session attempt's own events change nothing.
    post_events(stripe_app, fake)
    assert invoice_of(stripe_ctx, bought.invoice.id).status == InvoiceStatus.PENDING

    # The link opens Stripe's page for this invoice; there the cardholder confirms.
    started = checkout.pay_on_page(stripe_ctx, account_id=account, invoice_id=bought.invoice.id)
    assert started.url is not None
    assert fake.complete_checkout(session_id(started.url), "4000002760003184") is None
    post_events(stripe_app, fake)

    assert invoice_of(stripe_ctx, bought.invoice.id).status == InvoiceStatus.PAID
    assert balance_of(stripe_ctx, account).available == PACKAGE
    assert_ledger_clean(stripe_ctx)


def test_a_new_card_replaces_the_saved_one_through_stripes_setup_page(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account)

    url = checkout.replace_card(stripe_ctx, account_id=account)
    page = fake.get(session_id(url))
    assert page["mode"] == "setup"
    assert fake.complete_checkout(session_id(url), "5555555555554444") is None
    post_events(stripe_app, fake)

    with stripe_ctx.db.read() as session:
        card = cards.saved_card(session, account_id=account, gateway="stripe")
        assert card is not None
        assert (card.card_brand, card.card_last4) == ("mastercard", "4444")
    assert fake.payment_intents_created() == []  # saving a card charges nothing
    purchases.purchase(stripe_ctx, account_id=account, packages=1)
    (intent,) = fake.payment_intents_created()
    assert intent["payment_method"] == card.card_reference


# --- refunds -------------------------------------------------------------------------


def test_a_refund_returns_the_money_and_removes_only_the_unspent_tokens(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account)
    invoice = purchases.purchase(stripe_ctx, account_id=account, packages=2)
    spend(stripe_ctx, account, 3000, "before the refund")

    done = refunds.refund(stripe_ctx, invoice_id=invoice.id, account_id=account)

    assert (done.amount_cents, done.tokens_removed) == (2 * PRICE, 2 * PACKAGE - 3000)
    refund_calls = [r for r in fake.requests if r[1] == "/v1/refunds"]
    assert [(r[2]["amount"], r[3]) for r in refund_calls] == [
        (str(2 * PRICE), f"invoice:{invoice.id}:refund")
    ]
    assert balance_of(stripe_ctx, account).available == 0
    assert subscription_of(stripe_ctx, account).quantity == 0  # not renewed on the 1st
    refunded = invoice_of(stripe_ctx, invoice.id)
    assert refunded.refunded_cents == 2 * PRICE and refunded.refunded_at is not None
    (email,) = emails(stripe_ctx, "refund_issued")
    assert email["tokens_removed"] == 2 * PACKAGE - 3000
    with stripe_ctx.db.read() as session:
        removal = session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.account_id == account, LedgerEntry.kind == EntryKind.DEBIT
            )
        ).one()
        assert removal.available_delta == -(2 * PACKAGE - 3000)

    with pytest.raises(Conflict, match="already refunded"):
        refunds.refund(stripe_ctx, invoice_id=invoice.id, account_id=account)
    assert len([r for r in fake.requests if r[1] == "/v1/refunds"]) == 1
    assert_ledger_clean(stripe_ctx)


def test_a_refund_after_every_token_was_spent_removes_nothing_and_stays_at_zero(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account)
    invoice = purchases.purchase(stripe_ctx, account_id=account, packages=1)
    spend(stripe_ctx, account, PACKAGE, "all of it")

    done = refunds.refund(stripe_ctx, invoice_id=invoice.id, account_id=account)

    assert done.tokens_removed == 0
    assert balance_of(stripe_ctx, account).available == 0
    assert_ledger_clean(stripe_ctx)


def test_two_refunds_of_one_invoice_at_once_refund_it_once(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account)
    invoice = purchases.purchase(stripe_ctx, account_id=account, packages=1)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def operator() -> None:
        start.wait(timeout=30)
        try:
            refunds.refund(stripe_ctx, invoice_id=invoice.id)
            outcomes.append("refunded")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["conflict", "refunded"]
    refunds_made = {o["id"] for o in fake.events("charge.refunded")} or {
        r[3] for r in fake.requests if r[1] == "/v1/refunds"
    }
    assert len(refunds_made) == 1
    assert balance_of(stripe_ctx, account).available == 0
    assert len(emails(stripe_ctx, "refund_issued")) == 1
    assert_ledger_clean(stripe_ctx)


def test_only_a_paid_invoice_is_refunded(stripe_ctx: Context, fake: FakeStripe) -> None:
    account = new_account(stripe_ctx)
    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=1)
    with pytest.raises(Conflict, match="only a paid one"):
        refunds.refund(stripe_ctx, invoice_id=bought.invoice.id)
    assert not [r for r in fake.requests if r[1] == "/v1/refunds"]


def _invoices(ctx: Context, account_id: int) -> list[Invoice]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(Invoice).where(Invoice.account_id == account_id).order_by(Invoice.id)
            )
        )


def test_a_renewal_asking_for_3d_secure_waits_for_the_cardholder_and_renews_once(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    import datetime as dt

    from chatmeter.billing import renewals

    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account)
    purchases.purchase(stripe_ctx, account_id=account, packages=1)
    stripe_ctx.clock.set(dt.datetime(2026, 12, 1, 0, 0, 5, tzinfo=dt.UTC))
    fake.script("authentication_required")

    for _ in range(2):  # the job runs again and again: the pending renewal is not recharged
        renewals.run_renewals(stripe_ctx)

    (renewal,) = [i for i in _invoices(stripe_ctx, account) if i.kind == "renewal"]
    assert renewal.status == InvoiceStatus.PENDING
    assert len(emails(stripe_ctx, "payment_action_required")) == 1
    assert len(fake.payment_intents_created()) == 2  # the purchase, one renewal attempt
    started = checkout.pay_on_page(stripe_ctx, account_id=account, invoice_id=renewal.id)
    assert started.url is not None
    assert fake.complete_checkout(session_id(started.url), "4242424242424242") is None
    post_events(stripe_app, fake)
    renewals.run_renewals(stripe_ctx)

    assert invoice_of(stripe_ctx, renewal.id).status == InvoiceStatus.PAID
    assert balance_of(stripe_ctx, account).available == PACKAGE  # December's, once
    assert subscription_of(stripe_ctx, account).renewed_period == "2026-12"
    assert len(fake.payment_intents_created()) == 3
    assert_ledger_clean(stripe_ctx)


# --- auto top-up on the saved card ------------------------------------------------------


def test_auto_top_up_charges_the_saved_card_once_and_a_decline_turns_it_off(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    from tests.billing.test_auto_topup import run_job, setting, spend_to, top_ups, turn_on

    account = new_account(stripe_ctx)
    give_card(stripe_ctx, fake, account)
    purchases.purchase(stripe_ctx, account_id=account, packages=2)
    turn_on(stripe_ctx, account, threshold=1000, packages=1, cap=3)

    spend_to(stripe_ctx, account, 900, "crossing")
    for _ in range(2):
        run_job(stripe_ctx)
    (paid,) = top_ups(stripe_ctx, account)
    assert paid.status == InvoiceStatus.PAID
    intents = fake.payment_intents_created()
    assert [i["amount"] for i in intents] == [2 * PRICE, PRICE]
    assert intents[-1]["metadata"]["invoice_id"] == str(paid.id)
    assert balance_of(stripe_ctx, account).balance == 900 + PACKAGE
    assert subscription_of(stripe_ctx, account).quantity == 2  # a top-up never renews

    fake.script("card_declined")
    spend_to(stripe_ctx, account, 500, "crossing again")
    run_job(stripe_ctx)

    declined = top_ups(stripe_ctx, account)[-1]
    assert declined.status == InvoiceStatus.FAILED
    assert "declined" in (declined.failure_reason or "")
    assert setting(stripe_ctx, account).enabled is False
    assert len(emails(stripe_ctx, "topup_disabled")) == 1
    assert balance_of(stripe_ctx, account).balance == 500
    assert_ledger_clean(stripe_ctx)
