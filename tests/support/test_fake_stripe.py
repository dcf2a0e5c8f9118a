"""The fake Stripe answers the real ``stripe`` library as Stripe would: the library's own
objects and exceptions come back, its idempotency keys replay, its webhook check accepts
the signatures, and the hosted checkout page completes a session."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import stripe

from tests.support.fake_stripe import DELIVERY_ATTEMPTS, FakeStripe, StripeError, parse_form

VISA = "4242424242424242"


class Receiver:
    """A webhook endpoint on loopback: it keeps what it was sent and answers the statuses it
    is told to (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []  # (Stripe-Signature, body)
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver.received.append((self.headers["Stripe-Signature"], body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe"

    def events(self, secret: str) -> list[stripe.Event]:
        """What was received, through the check the product makes."""
        return [stripe.Webhook.construct_event(body, sig, secret) for sig, body in self.received]


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as running:
        yield running


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        fake.secret_key, base_addresses={"api": fake.url}, max_network_retries=0
    )


@pytest.fixture
def receiver(fake: FakeStripe) -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    fake.webhook_url = running.url
    yield running
    running.server.shutdown()
    running.server.server_close()
    running.thread.join()


def card(client: stripe.StripeClient, number: str, customer: str | None = None) -> str:
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    if customer:
        client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    return pm.id


def charge(client: stripe.StripeClient, customer: str, pm: str, **more: Any) -> Any:
    params: Any = {
        "amount": 900,
        "currency": "eur",
        "customer": customer,
        "payment_method": pm,
        "confirm": True,
        "off_session": True,
        "description": "5,000 tokens",
        "metadata": {"invoice_id": "5"},
    }
    return client.v1.payment_intents.create(params=params | more.pop("params", {}), **more)


def checkout(client: stripe.StripeClient, customer: str | None, **params: Any) -> Any:
    base: Any = {
        "mode": "payment",
        "success_url": "http://127.0.0.1:9/billing?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1:9/billing",
        "client_reference_id": "acct-1",
        "metadata": {"invoice_id": "7"},
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 900,
                    "product_data": {"name": "5,000 tokens"},
                },
                "quantity": 2,
            }
        ],
        "payment_intent_data": {
            "setup_future_usage": "off_session",
            "metadata": {"invoice_id": "7"},
            "description": "Top-up",
        },
    }
    if customer:
        base["customer"] = customer
    return client.v1.checkout.sessions.create(params=base | params)


def pay(session_url: str, number: str) -> httpx.Response:
    return httpx.post(session_url, data={"card_number": number, "exp": "12 / 34", "cvc": "1"})


# --- the wire format --------------------------------------------------------------------


def test_bracket_notation_becomes_nested_dicts_and_lists() -> None:
    pairs = [
        ("metadata[invoice_id]", "5"),
        ("metadata[0]", "kept as a key"),
        ("expand[0]", "payment_intent"),
        ("expand[1]", "setup_intent"),
        ("line_items[0][price_data][unit_amount]", "900"),
        ("line_items[0][quantity]", "1"),
    ]
    assert parse_form(pairs) == {
        "metadata": {"invoice_id": "5", "0": "kept as a key"},
        "expand": ["payment_intent", "setup_intent"],
        "line_items": [{"price_data": {"unit_amount": "900"}, "quantity": "1"}],
    }


def test_a_wrong_or_missing_key_is_refused(fake: FakeStripe) -> None:
    wrong = stripe.StripeClient("sk_test_wrong", base_addresses={"api": fake.url})
    with pytest.raises(stripe.AuthenticationError, match="Invalid API Key"):
        wrong.v1.customers.create(params={"email": "a@example.com"})
    assert httpx.get(f"{fake.url}/v1/customers/cus_x").status_code == 401
    assert fake.requests[0][:2] == ("POST", "/v1/customers")


def test_unknown_urls_and_parameters_are_invalid_requests(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="Unrecognized request URL") as caught:
        client.v1.invoices.retrieve("in_1")  # Stripe's own invoices: Chatmeter makes its own
    assert caught.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter: emial") as caught:
        client.v1.customers.create(params={"emial": "a@example.com"})  # type: ignore[typeddict-unknown-key]
    assert caught.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve("cus_missing")
    assert (caught.value.code, caught.value.http_status) == ("resource_missing", 404)
    with pytest.raises(stripe.InvalidRequestError, match="No such payment_intent: 'x'"):
        client.v1.payment_intents.retrieve("x")


# --- customers and cards ------------------------------------------------------------------


def test_customers_are_created_read_and_updated(client: stripe.StripeClient) -> None:
    created = client.v1.customers.create(
        params={"email": "a@example.com", "name": "Ada", "metadata": {"account_id": "3"}}
    )
    assert created.id.startswith("cus_") and created.object == "customer"
    assert not created.livemode and created.created > 0
    pm = card(client, VISA, created.id)
    client.v1.customers.update(
        created.id,
        params={
            "email": "b@example.com",
            "metadata": {"plan": "pro"},
            "invoice_settings": {"default_payment_method": pm},
        },
    )
    read = client.v1.customers.retrieve(created.id)
    assert read.email == "b@example.com" and read.name == "Ada"
    assert read.metadata.to_dict() == {"account_id": "3", "plan": "pro"}
    assert read.invoice_settings.default_payment_method == pm
    stranger = card(client, VISA)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(
            created.id, params={"invoice_settings": {"default_payment_method": stranger}}
        )


def test_a_card_is_attached_and_shown_without_its_number(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    customer = client.v1.customers.create(params={"email": "a@example.com"})
    pm = client.v1.payment_methods.retrieve(card(client, "5555555555554444", customer.id))
    assert pm.id.startswith("pm_") and pm.object == "payment_method" and pm.type == "card"
    assert pm.customer == customer.id
    assert (pm.card.brand, pm.card.last4, pm.card.exp_month, pm.card.exp_year) == (
        "mastercard",
        "4444",
        12,
        2034,
    )
    assert (pm.card.country, pm.card.funding) == ("US", "credit")
    assert "5555555555554444" not in str(pm)
    other = client.v1.customers.create(params={})
    with pytest.raises(stripe.InvalidRequestError, match="already been attached"):
        client.v1.payment_methods.attach(pm.id, params={"customer": other.id})
    with pytest.raises(stripe.CardError) as caught:
        card(client, "4242424242424241")
    assert caught.value.code == "incorrect_number"
    assert fake.events("payment_method.attached")[0]["data"]["object"]["id"] == pm.id


# --- off-session payments ---------------------------------------------------------------


def test_an_off_session_charge_succeeds(client: stripe.StripeClient, fake: FakeStripe) -> None:
    customer = client.v1.customers.create(params={"email": "a@example.com"}).id
    intent = charge(client, customer, fake.save_card(customer))
    assert isinstance(intent, stripe.PaymentIntent) and intent.id.startswith("pi_")
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", 900, 900)
    assert intent.currency == "eur" and intent.metadata["invoice_id"] == "5"
    assert intent.latest_charge and intent.latest_charge.startswith("ch_")
    read = client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["payment_method", "latest_charge"]}
    )
    assert read.payment_method.card.last4 == "4242"  # type: ignore[union-attr]
    assert read.latest_charge.status == "succeeded"  # type: ignore[union-attr]
    assert [e["type"] for e in fake.events()][-1] == "payment_intent.succeeded"


@pytest.mark.parametrize(
    ("number", "code", "decline_code"),
    [
        ("4000000000000002", "card_declined", "generic_decline"),
        ("4000000000009995", "card_declined", "insufficient_funds"),
        ("4000000000000341", "card_declined", "generic_decline"),
        ("4000002500003155", "authentication_required", "authentication_required"),
        ("4000002760003184", "authentication_required", "authentication_required"),
    ],
)
def test_an_off_session_charge_fails_as_the_test_card_says(
    client: stripe.StripeClient, fake: FakeStripe, number: str, code: str, decline_code: str
) -> None:
    customer = client.v1.customers.create(params={}).id
    with pytest.raises(stripe.CardError) as caught:
        charge(client, customer, fake.save_card(customer, number))
    error = caught.value
    assert (error.http_status, error.code, error.error.decline_code) == (402, code, decline_code)  # type: ignore[union-attr]
    intent = error.error.payment_intent  # type: ignore[union-attr]
    assert intent is not None and intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == code  # type: ignore[union-attr]
    assert client.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"
    assert fake.events()[-1]["type"] == "payment_intent.payment_failed"


def test_scripted_outcomes_come_first_then_the_card_decides_again(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    customer = client.v1.customers.create(params={}).id
    visa = fake.save_card(customer)
    fake.script("card_declined", "authentication_required", "succeeded")
    outcomes = []
    for pm in (visa, visa, fake.save_card(customer, "4000000000000002"), visa):
        try:
            outcomes.append(charge(client, customer, pm).status)
        except stripe.CardError as error:
            outcomes.append(error.code)
    assert outcomes == ["card_declined", "authentication_required", "succeeded", "succeeded"]


def test_the_same_idempotency_key_replays_the_first_answer(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    customer = client.v1.customers.create(params={}).id
    pm = fake.save_card(customer)
    key = "invoice-5-try-1"
    first = charge(client, customer, pm, options={"idempotency_key": key})
    again = charge(client, customer, pm, options={"idempotency_key": key})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert [pi["id"] for pi in fake.payment_intents_created()] == [first.id]
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        charge(client, customer, pm, params={"amount": 1800}, options={"idempotency_key": key})
    assert len(fake.payment_intents_created()) == 1
    assert fake.requests[-1][3] == key


def test_a_replayed_decline_is_the_same_decline_and_charges_nothing_more(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    customer = client.v1.customers.create(params={}).id
    pm = fake.save_card(customer, "4000000000000002")
    ids = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as caught:
            charge(client, customer, pm, options={"idempotency_key": "k"})
        ids.append(caught.value.error.payment_intent.id)  # type: ignore[union-attr]
    assert ids[0] == ids[1] and len(fake.payment_intents_created()) == 1


# --- checkout, webhooks -------------------------------------------------------------------


def test_a_checkout_session_is_paid_on_the_hosted_page_and_its_events_arrive_signed(
    client: stripe.StripeClient, fake: FakeStripe, receiver: Receiver
) -> None:
    customer = client.v1.customers.create(params={"email": "a@example.com"}).id
    session = checkout(client, customer)
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert (session.amount_total, session.currency, session.payment_intent) == (1800, "eur", None)
    assert session.url == f"{fake.url}/pay/{session.id}"
    assert session.client_reference_id == "acct-1" and session.expires_at > session.created
    page = httpx.get(session.url)
    assert page.status_code == 200 and "Pay 18.00 EUR" in page.text
    assert 'id="card-number"' in page.text and 'href="http://127.0.0.1:9/billing"' in page.text

    paid = pay(session.url, "4000 0025 0000 3155")  # 3D Secure passes on the page
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"http://127.0.0.1:9/billing?session={session.id}"

    fake.wait_for_deliveries(timeout=10)
    events = receiver.events(fake.webhook_secret)
    assert [e.type for e in events] == [
        "payment_method.attached",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    completed = events[-1].data.object
    assert completed["id"] == session.id and completed["metadata"]["invoice_id"] == "7"
    assert all(d.ok for d in fake.deliveries)

    read = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent", "payment_intent.payment_method"]}
    )
    assert (read.status, read.payment_status) == ("complete", "paid")
    intent: Any = read.payment_intent
    assert intent.status == "succeeded" and intent.amount_received == 1800
    assert intent.metadata["invoice_id"] == "7" and intent.description == "Top-up"
    assert intent.payment_method.customer == customer  # saved for off-session use
    assert fake.get(events[1].id)["request"] == {"id": None, "idempotency_key": None}
    assert client.v1.events.retrieve(events[-1].id).type == "checkout.session.completed"


def test_a_declined_card_on_the_page_leaves_the_session_open(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    session = checkout(client, None)
    refused = pay(session.url, "4000000000009995")
    assert refused.status_code == 402 and "insufficient funds" in refused.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert pay(session.url, VISA).status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["customer"]})
    assert done.status == "complete" and done.customer.id.startswith("cus_")  # type: ignore[union-attr]
    intent = client.v1.payment_intents.retrieve(done.payment_intent)  # type: ignore[arg-type]
    assert intent.status == "succeeded"
    assert [e["type"] for e in fake.events()] == [
        "payment_intent.payment_failed",
        "payment_method.attached",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    assert httpx.get(session.url).status_code == 410


def test_a_setup_session_saves_a_card(client: stripe.StripeClient, fake: FakeStripe) -> None:
    customer = client.v1.customers.create(params={}).id
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "customer": customer,
            "currency": "eur",
            "success_url": "http://127.0.0.1:9/done",
            "setup_intent_data": {"metadata": {"account_id": "3"}},
        }
    )
    assert "Save a card" in httpx.get(session.url).text
    assert pay(session.url, "4000002760003184").status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["setup_intent"]})
    assert (done.status, done.payment_status) == ("complete", "no_payment_required")
    setup: Any = done.setup_intent
    assert (setup.status, setup.usage, setup.customer) == ("succeeded", "off_session", customer)
    assert setup.metadata["account_id"] == "3"
    assert client.v1.setup_intents.retrieve(setup.id).payment_method == setup.payment_method
    with pytest.raises(stripe.CardError, match="requires authentication"):
        charge(client, customer, setup.payment_method)


def test_an_open_session_expires_once(client: stripe.StripeClient) -> None:
    session = checkout(client, None)
    assert client.v1.checkout.sessions.expire(session.id).status == "expired"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)
    assert pay(session.url, VISA).status_code == 402


def test_a_session_expires_on_its_own_at_expires_at(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    session = checkout(client, None)
    fake.clock = lambda: session.expires_at
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert httpx.get(session.url).status_code == 410


def test_a_failing_webhook_is_retried_then_given_up(
    client: stripe.StripeClient, fake: FakeStripe, receiver: Receiver
) -> None:
    receiver.answers = [500, 503, 200] + [500] * DELIVERY_ATTEMPTS
    customer = client.v1.customers.create(params={}).id
    fake.save_card(customer)
    fake.save_card(customer)
    deliveries = fake.wait_for_deliveries(timeout=10)
    assert [(d.attempt, d.status) for d in deliveries] == [(1, 500), (2, 503), (3, 200)] + [
        (n, 500) for n in range(1, DELIVERY_ATTEMPTS + 1)
    ]


def test_helpers_build_sign_and_send_an_event(fake: FakeStripe, receiver: Receiver) -> None:
    event = fake.event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    assert event["id"].startswith("evt_") and event["api_version"]
    assert fake.deliver(event) == 200
    fake.wait_for_deliveries()
    assert len(receiver.received) == 1  # made, not sent: only deliver() posted it
    body = receiver.received[0][1]
    stripe.Webhook.construct_event(body, fake.sign(body), fake.webhook_secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, fake.sign(body, secret="whsec_x"), fake.webhook_secret)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, fake.sign(body, timestamp=1), fake.webhook_secret)


# --- refunds, the billing portal ----------------------------------------------------------


def test_refunds_stop_at_what_was_paid(client: stripe.StripeClient, fake: FakeStripe) -> None:
    customer = client.v1.customers.create(params={}).id
    intent = charge(client, customer, fake.save_card(customer))
    part = client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 400, "metadata": {"invoice_id": "5"}}
    )
    assert part.id.startswith("re_") and part.object == "refund"
    assert (part.status, part.amount, part.payment_intent) == ("succeeded", 400, intent.id)
    assert part.charge == intent.latest_charge and part.currency == "eur"
    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded") as caught:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 501})
    assert caught.value.http_status == 400
    rest = client.v1.refunds.create(params={"payment_intent": intent.id})
    assert rest.amount == 500 and client.v1.refunds.retrieve(rest.id).amount == 500
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert caught.value.code == "charge_already_refunded"
    refunded = fake.events("charge.refunded")[-1]["data"]["object"]
    assert (refunded["amount_refunded"], refunded["refunded"]) == (900, True)


def test_a_refund_in_the_dashboard_is_delivered_signed_and_the_charge_tells_it(
    client: stripe.StripeClient, fake: FakeStripe, receiver: Receiver
) -> None:
    customer = client.v1.customers.create(params={}).id
    intent = charge(client, customer, fake.save_card(customer))
    fake.wait_for_deliveries()
    before = len(receiver.received)

    part = fake.refund_from_dashboard(intent.id, amount=300, reason="requested_by_customer")
    rest = fake.refund_from_dashboard(intent.id)
    fake.wait_for_deliveries()

    assert (part["amount"], rest["amount"], part["reason"]) == (300, 600, "requested_by_customer")
    with pytest.raises(StripeError, match="already been refunded"):
        fake.refund_from_dashboard(intent.id)
    events = receiver.events(fake.webhook_secret)[before:]
    assert [e.type for e in events] == ["refund.created", "charge.refunded"] * 2
    assert [e.data.object.amount_refunded for e in events[1::2]] == [300, 900]
    assert all(e.request.id is None for e in events)  # no API request of ours made them
    shown = client.v1.charges.retrieve(intent.latest_charge, params={"expand": ["payment_intent"]})
    assert (shown.amount_captured, shown.amount_refunded, shown.refunded) == (900, 900, True)
    assert shown.payment_intent.id == intent.id
    assert shown.payment_intent.metadata["invoice_id"] == "5"
    with pytest.raises(stripe.InvalidRequestError, match="No such charge"):
        client.v1.charges.retrieve("ch_nothing")


def test_the_billing_portal_leads_back(client: stripe.StripeClient, fake: FakeStripe) -> None:
    customer = client.v1.customers.create(params={}).id
    portal = client.v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": "http://127.0.0.1:9/billing"}
    )
    assert portal.id.startswith("bps_") and portal.customer == customer
    assert portal.url == f"{fake.url}/portal/{portal.id}"
    assert 'href="http://127.0.0.1:9/billing"' in httpx.get(portal.url).text


def test_created_follows_the_clock(client: stripe.StripeClient, fake: FakeStripe) -> None:
    fake.clock = lambda: 1_767_225_600.5
    assert client.v1.customers.create(params={}).created == 1_767_225_600
