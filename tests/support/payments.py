"""The Stripe gateway pointed at the fake Stripe API, and what tests do with it."""

from __future__ import annotations

import json
from typing import Any

from chatmeter.billing import cards
from chatmeter.billing.gateways import Customer, SavedCard
from chatmeter.billing.stripe_gateway import StripeGateway
from chatmeter.context import Context
from chatmeter.ledger import service as ledger
from tests.support.fake_stripe import FakeStripe


def with_stripe(ctx: Context, fake: FakeStripe, **settings: Any) -> Context:
    """The test's context (database, clock) with ``CHATMETER_PAYMENT_GATEWAY=stripe``."""
    changed = ctx.settings.model_copy(
        update={
            "payment_gateway": "stripe",
            "stripe_secret_key": fake.secret_key,
            "stripe_publishable_key": "pk_test_fake",
            "stripe_webhook_secret": fake.webhook_secret,
            "stripe_api_base": fake.url,
            **settings,
        }
    )
    return Context(settings=changed, db=ctx.db, clock=ctx.clock, gateway=StripeGateway(changed))


def gateway(ctx: Context) -> StripeGateway:
    assert isinstance(ctx.gateway, StripeGateway)
    return ctx.gateway


def give_card(
    ctx: Context, fake: FakeStripe, account_id: int, number: str = "4242424242424242"
) -> str:
    """A returning customer: a Stripe customer with a saved card, known to Chatmeter."""
    customer = gateway(ctx).customer(
        Customer(account_id=account_id, email=f"owner{account_id}@example.com", name="Shop")
    )
    card_id = fake.save_card(customer, number)
    card = fake.get(card_id)["card"]
    with ctx.db.uow() as uow:
        ledger.lock_balance(uow.session, account_id=account_id)
        cards.save_card(
            uow.session,
            account_id=account_id,
            gateway="stripe",
            customer=customer,
            card=SavedCard(card_id, card["brand"], card["last4"], card["exp_month"], 2030),
            now=ctx.clock.now(),
        )
        uow.commit()
    return customer


def signed(fake: FakeStripe, event: dict[str, Any], **sign: Any) -> tuple[bytes, dict[str, str]]:
    """An event's body and headers as Stripe posts them."""
    body = json.dumps(event)
    return body.encode(), {
        "Stripe-Signature": fake.sign(body, **sign),
        "Content-Type": "application/json",
    }
