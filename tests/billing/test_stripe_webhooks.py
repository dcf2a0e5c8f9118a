"""``POST /webhooks/stripe``: signed, applied at most once, in any order, on Stripe's own word.

The events come from the fake Stripe API (what Stripe would send for a real payment)
and are posted to the app, on SQLite and PostgreSQL. ``ledger verify`` is clean after
every scenario and a paid invoice is granted exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatmeter.billing import purchases
from chatmeter.billing.models import GatewayEvent, Invoice, InvoiceStatus
from chatmeter.billing.stripe_gateway import HANDLED_EVENTS
from chatmeter.context import Context
from chatmeter.ledger.models import Grant
from tests.support.accounts import balance_of, new_account
from tests.support.fake_stripe import FakeStripe
from tests.support.ledger import assert_ledger_clean
from tests.support.live import LiveServer
from tests.support.payments import signed

PACKAGE = 5000


def paid_on_page(stripe_ctx: Context, fake: FakeStripe, packages: int = 2) -> tuple[int, int]:
    """An account whose first purchase was paid on Stripe's page; no webhook posted yet."""
    account = new_account(stripe_ctx)
    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=packages)
    assert bought.pay_url is not None
    assert fake.complete_checkout(bought.pay_url.rsplit("/", 1)[-1], "4242424242424242") is None
    return account, bought.invoice.id


def post(
    stripe_app: TestClient, fake: FakeStripe, event: dict[str, Any], **sign: Any
) -> httpx.Response:
    body, headers = signed(fake, event, **sign)
    return stripe_app.post("/webhooks/stripe", content=body, headers=headers)


def status_of(ctx: Context, invoice_id: int) -> str:
    with ctx.db.read() as session:
        invoice = session.get(Invoice, invoice_id)
        assert invoice is not None
        return invoice.status


def grants_of(ctx: Context, invoice_id: int) -> int:
    with ctx.db.read() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Grant).where(Grant.invoice_id == invoice_id)
            )
            or 0
        )


def events_recorded(ctx: Context) -> int:
    with ctx.db.read() as session:
        return session.scalar(select(func.count()).select_from(GatewayEvent)) or 0


# --- the signature -------------------------------------------------------------------


def test_a_signed_event_is_applied(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    account, invoice_id = paid_on_page(stripe_ctx, fake)
    (completed,) = fake.events("checkout.session.completed")

    response = post(stripe_app, fake, completed)

    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "applied"}
    assert status_of(stripe_ctx, invoice_id) == InvoiceStatus.PAID
    assert balance_of(stripe_ctx, account).available == 2 * PACKAGE
    assert_ledger_clean(stripe_ctx)


@pytest.mark.parametrize(
    "forgery",
    ["missing", "stale", "future", "tampered", "other secret", "garbage header", "not json"],
)
def test_a_delivery_without_a_valid_fresh_signature_is_refused_and_changes_nothing(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient, forgery: str
) -> None:
    account, invoice_id = paid_on_page(stripe_ctx, fake)
    (completed,) = fake.events("checkout.session.completed")
    body = json.dumps(completed)
    now = int(time.time())
    tolerance = stripe_ctx.settings.stripe_webhook_tolerance_seconds
    headers = {
        "missing": {},
        "stale": {"Stripe-Signature": fake.sign(body, timestamp=now - tolerance - 60)},
        "future": {"Stripe-Signature": fake.sign(body, timestamp=now + tolerance + 60)},
        "tampered": {"Stripe-Signature": fake.sign(body)},
        "other secret": {"Stripe-Signature": fake.sign(body, secret="whsec_someone_else")},
        "garbage header": {"Stripe-Signature": "t=abc,v1=zzz"},
        "not json": {"Stripe-Signature": fake.sign("{not json")},
    }[forgery]
    if forgery == "tampered":
        body = body.replace('"livemode": false', '"livemode": true')
        assert '"livemode": true' in body
    if forgery == "not json":
        body = "{not json"

    response = stripe_app.post("/webhooks/stripe", content=body.encode(), headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert status_of(stripe_ctx, invoice_id) == InvoiceStatus.PENDING
    assert balance_of(stripe_ctx, account).available == 0
    assert events_recorded(stripe_ctx) == 0


def test_the_manual_gateway_has_no_stripe_webhook(ctx: Context, app_client: TestClient) -> None:
    response = app_client.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "x"})
    assert response.status_code == 404


def test_an_oversized_delivery_is_refused_before_it_is_read(
    stripe_ctx: Context, stripe_app: TestClient
) -> None:
    body = b"{" + b" " * (stripe_ctx.settings.max_body_bytes + 10) + b"}"
    response = stripe_app.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": "t=1,v1=a"}
    )
    assert response.status_code == 413


# --- at most once, in any order ------------------------------------------------------


def test_the_same_event_five_times_at_once_is_applied_once(
    stripe_ctx: Context, fake: FakeStripe
) -> None:
    from chatmeter.web.app import create_app

    account, invoice_id = paid_on_page(stripe_ctx, fake)
    (completed,) = fake.events("checkout.session.completed")
    body, headers = signed(fake, completed)
    start = threading.Barrier(5)
    answers: list[str] = []

    with LiveServer(create_app(stripe_ctx)) as server:

        def deliver() -> None:
            start.wait(timeout=30)
            response = httpx.post(f"{server.url}/webhooks/stripe", content=body, headers=headers)
            answers.append(f"{response.status_code} {response.json().get('outcome')}")

        threads = [threading.Thread(target=deliver) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert sorted(answers) == ["200 applied"] + ["200 duplicate"] * 4
    assert grants_of(stripe_ctx, invoice_id) == 1
    assert balance_of(stripe_ctx, account).available == 2 * PACKAGE
    assert events_recorded(stripe_ctx) == 1
    assert_ledger_clean(stripe_ctx)


def test_events_in_any_order_grant_the_invoice_once(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    account, invoice_id = paid_on_page(stripe_ctx, fake)
    events = fake.events()
    assert {"checkout.session.completed", "payment_intent.succeeded"} <= {e["type"] for e in events}

    outcomes = [post(stripe_app, fake, event).json()["outcome"] for event in reversed(events)]
    outcomes += [post(stripe_app, fake, event).json()["outcome"] for event in events]  # redelivered

    handled = [e for e in events if e["type"] in HANDLED_EVENTS]
    assert outcomes.count("applied") == len(handled)  # each once, the first time it came
    assert outcomes.count("duplicate") == len(handled)
    assert status_of(stripe_ctx, invoice_id) == InvoiceStatus.PAID
    assert grants_of(stripe_ctx, invoice_id) == 1
    assert balance_of(stripe_ctx, account).available == 2 * PACKAGE
    assert_ledger_clean(stripe_ctx)


def test_a_late_failure_event_does_not_undo_a_paid_invoice(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    account, invoice_id = paid_on_page(stripe_ctx, fake)
    for event in fake.events():
        post(stripe_app, fake, event)
    intent = fake.get(fake.events("payment_intent.succeeded")[0]["data"]["object"]["id"])
    late = fake.event(
        "payment_intent.payment_failed", {**intent, "status": "requires_payment_method"}
    )

    assert post(stripe_app, fake, late).status_code == 200

    assert status_of(stripe_ctx, invoice_id) == InvoiceStatus.PAID
    assert balance_of(stripe_ctx, account).available == 2 * PACKAGE
    assert_ledger_clean(stripe_ctx)


def test_unknown_events_are_acknowledged_and_ignored(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    event = fake.event("customer.updated", {"id": "cus_x", "object": "customer"})
    response = post(stripe_app, fake, event)
    assert response.json() == {"received": True, "outcome": "ignored"}
    assert events_recorded(stripe_ctx) == 0


# --- Stripe's word, not the payload's -------------------------------------------------


def test_a_payload_claiming_a_payment_stripe_does_not_know_grants_nothing(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    """The event's body says succeeded for the invoice; Stripe's PaymentIntent says not."""
    account = new_account(stripe_ctx)
    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=2)
    session = fake.get(bought.pay_url.rsplit("/", 1)[-1])  # type: ignore[union-attr]
    forged = fake.event(
        "checkout.session.completed",
        {**session, "status": "complete", "payment_status": "paid", "amount_total": 1},
    )

    assert post(stripe_app, fake, forged).status_code == 200

    assert status_of(stripe_ctx, bought.invoice.id) == InvoiceStatus.PENDING
    assert balance_of(stripe_ctx, account).available == 0


def test_a_payment_of_another_amount_than_the_invoice_grants_nothing(
    stripe_ctx: Context, fake: FakeStripe, stripe_app: TestClient
) -> None:
    """A PaymentIntent that names the pending invoice but received 0.01 (made outside Chatmeter)."""
    import stripe

    from chatmeter.billing import cards

    account = new_account(stripe_ctx)
    bought = purchases.start_purchase(stripe_ctx, account_id=account, packages=2)
    with stripe_ctx.db.read() as session:
        customer = cards.customer_reference(session, account_id=account, gateway="stripe")
    assert customer is not None
    client = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.url})
    cheap = client.v1.payment_intents.create(
        params={
            "amount": 1,
            "currency": "eur",
            "customer": customer,
            "payment_method": fake.save_card(customer),
            "off_session": True,
            "confirm": True,
            "metadata": {"invoice_id": str(bought.invoice.id), "account_id": str(account)},
        }
    )
    event = fake.event("payment_intent.succeeded", fake.get(cheap.id))

    assert post(stripe_app, fake, event).json()["outcome"] == "applied"

    assert status_of(stripe_ctx, bought.invoice.id) == InvoiceStatus.PENDING
    assert grants_of(stripe_ctx, bought.invoice.id) == 0
    assert balance_of(stripe_ctx, account).available == 0
