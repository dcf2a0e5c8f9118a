"""Cards through Stripe, with Stripe's official library.

Chatmeter's own billing engine stays in charge: it decides what to charge and when
(the renewal on the 1st, retries, cancellation); Stripe only moves the money.

- An account's first payment goes through Stripe Checkout (``checkout``): Stripe's
  hosted page takes the card, 3-D Secure included, and saves it for later.
- Every later charge (a purchase, the renewal, an auto top-up) is a PaymentIntent
  confirmed server-side on the saved card, ``off_session``, with the invoice's
  idempotency key: a retry of the same attempt never charges twice.
- Stripe's webhooks say what happened (``read_event``); what they claim is never
  trusted as such: the objects are fetched again from Stripe (``payment``, ``setup``
  and, for a refund made in Stripe's dashboard, ``charge_refunds``) and
  ``billing.webhooks`` applies them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import stripe

from chatmeter.billing.gateways import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    CheckoutRequest,
    Customer,
    HostedPage,
    RefundResult,
    SavedCard,
)
from chatmeter.config import Settings

log = logging.getLogger("chatmeter.billing.stripe")

NO_CARD = "no card is saved for this account: add one on the billing page"
# Events Chatmeter acts on; every other event is acknowledged and ignored.
HANDLED_EVENTS = frozenset(
    {
        "charge.refunded",
        "checkout.session.completed",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "setup_intent.succeeded",
    }
)


class InvalidEvent(ValueError):
    """A webhook without a valid, fresh signature of our endpoint's secret."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    object_id: str


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment as Stripe reports it when asked (never as a webhook's body says)."""

    reference: str  # the PaymentIntent
    status: str  # Stripe's PaymentIntent status
    invoice_id: int | None
    account_id: int | None
    amount_received: int
    currency: str
    customer: str | None
    card: SavedCard | None  # the card, when the customer agreed to keep it for later
    via_checkout: bool
    # The bank asked for the cardholder (3-D Secure): the invoice waits for them, not declined.
    needs_customer: bool = False


@dataclass(frozen=True, slots=True)
class ChargeRefunds:
    """How much of a charge is refunded, as Stripe reports it when asked.

    ``amount_refunded`` counts every refund Stripe accepted, pending ones too (as
    ``refund`` does for Chatmeter's own).
    """

    charge: str
    payment_intent: str | None  # what Chatmeter keeps as the invoice's gateway reference
    invoice_id: int | None  # from the PaymentIntent's metadata
    customer: str | None
    amount_captured: int
    amount_refunded: int
    currency: str


@dataclass(frozen=True, slots=True)
class CardSetup:
    """A card the customer saved on Stripe's page, as Stripe reports it."""

    account_id: int | None
    customer: str | None
    card: SavedCard | None


class StripeGateway:
    name = "stripe"
    hosted_checkout = True

    def __init__(self, settings: Settings) -> None:
        assert settings.stripe_secret_key and settings.stripe_webhook_secret
        self.webhook_secret = settings.stripe_webhook_secret
        self.tolerance = settings.stripe_webhook_tolerance_seconds
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            http_client=stripe.RequestsClient(timeout=30),
            max_network_retries=2,
        )

    # --- charges on the saved card ----------------------------------------------------

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if not request.customer or not request.card:
            return ChargeResult(ChargeStatus.FAILED, reason=NO_CARD)
        params: dict[str, Any] = {
            "amount": request.amount_cents,
            "currency": request.currency.lower(),
            "customer": request.customer,
            "payment_method": request.card,
            "off_session": True,
            "confirm": True,
            "description": request.description,
            "metadata": _metadata(request.invoice_id, request.account_id),
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as exc:
            failed = exc.error.payment_intent if exc.error else None
            reference = failed.id if failed is not None else None
            reason = _card_message(exc)
            if exc.code == "authentication_required":
                return ChargeResult(ChargeStatus.ACTION_REQUIRED, reference, reason)
            return ChargeResult(ChargeStatus.FAILED, reference, reason)
        return ChargeResult(_status(intent.status), intent.id, _last_error(intent))

    def refund(
        self, *, reference: str | None, amount_cents: int, idempotency_key: str
    ) -> RefundResult:
        if not reference:
            return RefundResult(False, reason="the invoice has no Stripe payment to refund")
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": reference, "amount": amount_cents},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            return RefundResult(False, reason=exc.user_message or str(exc))
        if refund.status in ("succeeded", "pending"):
            return RefundResult(True, reference=refund.id)
        return RefundResult(False, reference=refund.id, reason=f"the refund is {refund.status}")

    # --- Stripe's hosted pages ------------------------------------------------------

    def customer(self, customer: Customer) -> str:
        """The Stripe Customer of an account: the one it has, or a new one."""
        if customer.reference:
            return customer.reference
        made = self.client.v1.customers.create(
            params={
                "email": customer.email,
                "name": customer.name,
                "metadata": {"account_id": str(customer.account_id)},
            },
            options={"idempotency_key": f"account:{customer.account_id}:customer"},
        )
        return made.id

    def checkout(self, request: CheckoutRequest) -> HostedPage:
        """Stripe Checkout for one invoice; the card is saved for later charges."""
        metadata = {"invoice_id": str(request.invoice_id)}
        session = self.client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "customer": request.customer,
                "client_reference_id": str(request.invoice_id),
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": request.currency.lower(),
                            "unit_amount": request.amount_cents,
                            "product_data": {"name": request.description},
                        },
                    }
                ],
                "payment_intent_data": {
                    "setup_future_usage": "off_session",
                    "description": request.description,
                    "metadata": metadata,
                },
                "metadata": metadata,
                "success_url": request.success_url,
                "cancel_url": request.cancel_url,
            },
            options={"idempotency_key": request.idempotency_key},
        )
        assert session.url is not None
        return HostedPage(url=session.url, reference=session.id)

    def open_page(self, reference: str) -> HostedPage | None:
        """The Checkout session, if the customer can still pay on it."""
        session = self.client.v1.checkout.sessions.retrieve(reference)
        if session.status == "open" and session.url:
            return HostedPage(url=session.url, reference=session.id)
        return None

    def close_page(self, reference: str) -> bool:
        """Expire an open Checkout session; False when it was already paid."""
        session = self.client.v1.checkout.sessions.retrieve(reference)
        if session.status == "complete":
            return False
        if session.status == "open":
            self.client.v1.checkout.sessions.expire(reference)
        return True

    def setup_page(
        self,
        *,
        customer: str,
        account_id: int,
        currency: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> HostedPage:
        """Stripe Checkout in setup mode: a new card replaces the saved one, nothing is charged."""
        metadata = {"account_id": str(account_id)}
        session = self.client.v1.checkout.sessions.create(
            params={
                "mode": "setup",
                "customer": customer,
                "currency": currency.lower(),
                "setup_intent_data": {"metadata": metadata},
                "metadata": metadata,
                "success_url": success_url,
                "cancel_url": cancel_url,
            },
            options={"idempotency_key": idempotency_key},
        )
        assert session.url is not None
        return HostedPage(url=session.url, reference=session.id)

    def portal(self, *, customer: str, return_url: str) -> str:
        """Stripe's customer portal: the customer's payment history and cards."""
        session = self.client.v1.billing_portal.sessions.create(
            params={"customer": customer, "return_url": return_url}
        )
        return session.url

    # --- webhooks ------------------------------------------------------------------

    def read_event(self, payload: bytes, signature: str | None) -> Event:
        """The event, if Stripe signed it with our endpoint's secret within the tolerance."""
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), signature or "", self.webhook_secret, self.tolerance
            )
            _not_from_the_future(signature or "", self.tolerance)
            event = stripe.Webhook.construct_event_without_verification(payload.decode("utf-8"))
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidEvent(str(exc) or "invalid signature") from exc
        data = getattr(event, "data", None)
        obj = getattr(data, "object", None)
        object_id = getattr(obj, "id", None) if obj is not None else None
        if not isinstance(event.id, str) or not isinstance(event.type, str):
            raise InvalidEvent("not a Stripe event")
        return Event(id=event.id, type=event.type, object_id=str(object_id or ""))

    def payment(self, intent_id: str) -> Payment:
        intent = self.client.v1.payment_intents.retrieve(
            intent_id, params={"expand": ["payment_method"]}
        )
        return _payment(intent, via_checkout=False)

    def checkout_payment(self, session_id: str) -> Payment | CardSetup | None:
        """What a completed Checkout session did: a payment, a saved card, or nothing yet."""
        session = self.client.v1.checkout.sessions.retrieve(
            session_id,
            params={"expand": ["payment_intent.payment_method", "setup_intent.payment_method"]},
        )
        if session.mode == "setup":
            setup = session.setup_intent
            if setup is None or isinstance(setup, str):
                return None
            return _card_setup(setup)
        intent = session.payment_intent
        if intent is None or isinstance(intent, str):
            return None
        metadata = _metadata_of(session)
        found = _payment(intent, via_checkout=True)
        if found.invoice_id is None:
            found = dataclasses.replace(found, invoice_id=_int(metadata.get("invoice_id")))
        return found

    def charge_refunds(self, charge_id: str) -> ChargeRefunds:
        charge = self.client.v1.charges.retrieve(charge_id, params={"expand": ["payment_intent"]})
        intent = charge.payment_intent
        metadata = (
            _metadata_of(intent) if intent is not None and not isinstance(intent, str) else {}
        )
        return ChargeRefunds(
            charge=charge.id,
            payment_intent=_id_of(intent),
            invoice_id=_int(metadata.get("invoice_id")),
            customer=_id_of(charge.customer),
            amount_captured=int(charge.amount_captured or 0),
            amount_refunded=int(charge.amount_refunded or 0),
            currency=str(charge.currency or "").upper(),
        )

    def setup(self, setup_id: str) -> CardSetup:
        setup = self.client.v1.setup_intents.retrieve(
            setup_id, params={"expand": ["payment_method"]}
        )
        return _card_setup(setup)


def _not_from_the_future(signature: str, tolerance: int) -> None:
    """Stripe's library refuses old timestamps only; one far ahead is as suspect."""
    stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    if not stamps or not stamps[0].isdigit() or int(stamps[0]) > time.time() + tolerance:
        raise ValueError("the signature's timestamp is outside the tolerance zone")


def _metadata(invoice_id: int, account_id: int) -> dict[str, str]:
    return {"invoice_id": str(invoice_id), "account_id": str(account_id)}


def _status(stripe_status: str) -> ChargeStatus:
    if stripe_status == "succeeded":
        return ChargeStatus.SUCCEEDED
    if stripe_status == "processing":
        return ChargeStatus.PENDING
    if stripe_status in ("requires_action", "requires_confirmation"):
        return ChargeStatus.ACTION_REQUIRED
    return ChargeStatus.FAILED


def _card_message(exc: stripe.StripeError) -> str:
    message = exc.user_message or "the card was declined"
    decline = getattr(exc.error, "decline_code", None) if exc.error else None
    return f"{message} ({decline})" if decline and decline not in message else message


def _last_error(intent: Any) -> str | None:
    error = getattr(intent, "last_payment_error", None)
    return getattr(error, "message", None) if error else None


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _card(method: Any) -> SavedCard | None:
    if method is None or isinstance(method, str) or getattr(method, "card", None) is None:
        return None
    card = method.card
    return SavedCard(
        reference=method.id,
        brand=str(card.brand or ""),
        last4=str(card.last4 or ""),
        exp_month=int(card.exp_month or 0),
        exp_year=int(card.exp_year or 0),
    )


def _id_of(value: Any) -> str | None:
    """The id of an expandable field (a customer, a PaymentIntent): a string or an object."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.id)


def _metadata_of(obj: Any) -> dict[str, Any]:
    metadata = getattr(obj, "metadata", None)
    return dict(metadata.to_dict()) if metadata is not None else {}


def _payment(intent: Any, *, via_checkout: bool) -> Payment:
    metadata = _metadata_of(intent)
    keeps_card = getattr(intent, "setup_future_usage", None) == "off_session"
    return Payment(
        reference=intent.id,
        status=intent.status,
        invoice_id=_int(metadata.get("invoice_id")),
        account_id=_int(metadata.get("account_id")),
        amount_received=int(intent.amount_received or 0),
        currency=str(intent.currency or "").upper(),
        customer=_id_of(intent.customer),
        card=_card(intent.payment_method) if keeps_card else None,
        via_checkout=via_checkout,
        needs_customer=intent.status == "requires_action"
        or getattr(getattr(intent, "last_payment_error", None), "code", None)
        == "authentication_required",
    )


def _card_setup(setup: Any) -> CardSetup:
    metadata = _metadata_of(setup)
    succeeded = setup.status == "succeeded"
    return CardSetup(
        account_id=_int(metadata.get("account_id")),
        customer=_id_of(setup.customer),
        card=_card(setup.payment_method) if succeeded else None,
    )
