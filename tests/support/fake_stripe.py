"""Stripe's API as the ``stripe`` library sees it, served on loopback for the tests.

Stripe cannot be reached from the machines the tests run on, so the billing code talks to
this server instead, through the real ``stripe`` library pointed at ``FakeStripe.url``. It
answers the endpoints Chatmeter uses with Stripe's paths, form encoding, object shapes,
errors, authentication and idempotency; it serves the pages Stripe hosts (checkout, billing
portal); and it signs and delivers webhooks from a background thread, as Stripe does.

Outcomes follow Stripe's test card numbers (``TEST_CARDS``); ``FakeStripe.script`` overrides
the next off-session outcomes whatever the card; ``FakeStripe.refund_from_dashboard`` refunds a
payment as an operator does in Stripe's dashboard (the same refund and events as the API's).
Everything else a test needs to look at (requests received, PaymentIntents created, webhook
deliveries) is a Python attribute.

Use: ``with FakeStripe() as fake:``, then ``stripe.StripeClient(fake.secret_key,
base_addresses={"api": fake.url})``; set ``fake.webhook_url`` to receive events, and
``fake.wait_for_deliveries()`` before asserting on what they did. A parameter Stripe has but
this fake does not list in ``ROUTES`` is refused as unknown (as Stripe refuses typos): add it
there when the product starts sending it. The hosted page saves the card to the customer
only when the session asked for it (``payment_intent_data[setup_future_usage]``, or setup
mode); a declined card re-shows the page (HTTP 402) with the session still open.

Where this differs from Stripe on purpose:
- attaching a card always succeeds (Stripe refuses to attach 4000000000000002 and
  4000000000009995; here they attach and decline their charges, so tests can save them);
- webhook signatures carry the real time, not ``clock``: the receiver checks them against
  its own wall clock, as ``stripe.Webhook.construct_event`` does;
- the whole API answers one request at a time (a lock), so two requests with the same
  idempotency key never race: the second one replays the first.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import html
import json
import re
import secrets
import string
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2026-10-28.endive"  # the version stripe 16.1.0 asks for
DELIVERY_ATTEMPTS = 4  # a non-2xx webhook is retried, then given up
DELIVERY_BACKOFF = 0.05  # seconds before the 2nd attempt, doubled for each further one
CHECKOUT_LIFETIME = 24 * 3600  # Stripe's default expires_at
ZERO_DECIMAL_CURRENCIES = {"jpy", "krw", "vnd", "clp", "pyg", "ugx", "xaf", "xof"}

Obj = dict[str, Any]


# --- Stripe's test cards ---------------------------------------------------------------


@dataclass(frozen=True)
class Decline:
    """Why a charge was refused, in the words Stripe's card_error uses."""

    code: str
    decline_code: str | None
    message: str


GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")
NO_FUNDS = Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
AUTHENTICATE = Decline(
    "authentication_required", "authentication_required", "Your card was declined. This "
    "transaction requires authentication."
)  # fmt: skip
EXPIRED = Decline("expired_card", None, "Your card has expired.")
BAD_CVC = Decline("incorrect_cvc", None, "Your card's security code is incorrect.")
SCRIPTED = {"card_declined": GENERIC, "authentication_required": AUTHENTICATE}


@dataclass(frozen=True)
class CardBehaviour:
    """How one of Stripe's test card numbers behaves."""

    brand: str
    funding: str = "credit"
    country: str = "US"
    decline: Decline | None = None
    needs_authentication: bool = False  # 3D Secure: off-session charges fail, on-session pass
    sets_up: bool = False  # a declining card that can still be saved (setup succeeds)


TEST_CARDS = {
    "4242424242424242": CardBehaviour("visa"),
    "4000056655665556": CardBehaviour("visa", funding="debit"),
    "5555555555554444": CardBehaviour("mastercard"),
    "378282246310005": CardBehaviour("amex"),
    "4000000000000002": CardBehaviour("visa", decline=GENERIC),
    "4000000000009995": CardBehaviour("visa", decline=NO_FUNDS),
    "4000000000000341": CardBehaviour("visa", decline=GENERIC, sets_up=True),
    "4000000000000069": CardBehaviour("visa", decline=EXPIRED),
    "4000000000000127": CardBehaviour("visa", decline=BAD_CVC),
    "4000002500003155": CardBehaviour("visa", needs_authentication=True),
    "4000002760003184": CardBehaviour("visa", country="DE", needs_authentication=True),
}


def luhn_valid(number: str) -> bool:
    """Whether a card number passes the check digit test, as Stripe checks before all else."""
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(number)):
        d = int(digit) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def card_behaviour(number: str) -> CardBehaviour:
    """The behaviour of a card number: Stripe's own for its test cards, else success."""
    if number in TEST_CARDS:
        return TEST_CARDS[number]
    brand = {"4": "visa", "5": "mastercard", "3": "amex"}.get(number[:1], "unknown")
    return CardBehaviour(brand)


# --- Stripe's wire format ----------------------------------------------------------------


def parse_form(pairs: list[tuple[str, str]]) -> Obj:
    """Stripe's bracket notation (``a[b][0]=x``, ``expand[]=y``) as nested dicts and lists."""
    root: Obj = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        last = parts[-1] if parts[-1] != "" else str(len(node))
        node[last] = value
    return _listify(root, parent="")


def _listify(node: Any, parent: str) -> Any:
    """Dicts keyed 0, 1, 2... become lists; metadata keys stay what the caller chose."""
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v, parent=k) for k, v in node.items()}
    if items and parent != "metadata" and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def sign(payload: str, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header: HMAC-SHA256 of ``"{t}.{payload}"`` keyed by the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def money(cents: int, currency: str) -> str:
    """An amount as a checkout page shows it: ``45.00 EUR``."""
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return f"{cents} {currency.upper()}"
    return f"{cents // 100}.{cents % 100:02d} {currency.upper()}"


class StripeError(Exception):
    """An error answer, with the HTTP status and the ``error`` object Stripe sends."""

    def __init__(self, status: int, type_: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error: Obj = {"type": type_, "message": message}
        self.error.update({k: v for k, v in fields.items() if v is not None})


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, param=param, code=code)


def card_error(message: str, code: str, param: str | None = None, **more: Any) -> StripeError:
    return StripeError(402, "card_error", message, code=code, param=param, **more)


def missing(kind: str, id_: str, param: str | None = None) -> StripeError:
    message = f"No such {kind}: '{id_}'"
    return StripeError(404, "invalid_request_error", message, code="resource_missing", param=param)


def required(params: Obj, name: str) -> Any:
    if params.get(name) in (None, ""):
        raise invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
    return params[name]


def integer(params: Obj, name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None:
        if default is None:
            raise invalid(f"Missing required param: {name}.", name, "parameter_missing")
        return default
    if not re.fullmatch(r"-?\d+", str(value)):
        raise invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    return int(value)


def pick(params: Obj, *names: str) -> Obj:
    """The named parameters as an object's fields; unset ones are null, as in Stripe's JSON."""
    return {name: params.get(name) or None for name in names}


def boolean(params: Obj, name: str) -> bool:
    return str(params.get(name, "false")).lower() == "true"


def metadata(params: Obj, key: str = "metadata", base: Obj | None = None) -> Obj:
    """Stripe's metadata update: keys merge, an empty value removes its key."""
    merged = dict(base or {})
    for k, v in (params.get(key) or {}).items():
        if v == "":
            merged.pop(k, None)
        else:
            merged[k] = str(v)
    return merged


# --- the endpoints ---------------------------------------------------------------------

EXPAND = {"expand"}
CUSTOMER_PARAMS = EXPAND | {"email", "name", "metadata", "description", "phone", "address"}
CUSTOMER_PARAMS |= {"invoice_settings", "preferred_locales", "payment_method"}
PAYMENT_INTENT_PARAMS = EXPAND | {
    "amount", "currency", "customer", "payment_method", "confirm", "off_session",
    "description", "metadata", "setup_future_usage", "payment_method_types", "receipt_email",
    "statement_descriptor", "statement_descriptor_suffix", "capture_method",
    "confirmation_method", "error_on_requires_action", "return_url",
    "automatic_payment_methods", "payment_method_options",
}  # fmt: skip
CHECKOUT_PARAMS = EXPAND | {
    "mode", "line_items", "customer", "customer_email", "customer_creation", "success_url",
    "cancel_url", "client_reference_id", "metadata", "payment_intent_data",
    "setup_intent_data", "currency", "payment_method_types", "locale", "expires_at",
    "submit_type", "billing_address_collection", "customer_update", "allow_promotion_codes",
    "invoice_creation", "tax_id_collection", "saved_payment_method_options",
}  # fmt: skip

# (method, path pattern, handler name, accepted top-level parameters)
ROUTES: list[tuple[str, str, str, set[str]]] = [
    ("POST", r"/v1/customers", "create_customer", CUSTOMER_PARAMS),
    ("GET", r"/v1/customers/([^/]+)", "get", EXPAND),
    ("POST", r"/v1/customers/([^/]+)", "update_customer", CUSTOMER_PARAMS),
    ("POST", r"/v1/payment_methods", "create_payment_method", EXPAND | {
        "type", "card", "billing_details", "metadata"}),
    ("POST", r"/v1/payment_methods/([^/]+)/attach", "attach_payment_method", EXPAND | {
        "customer"}),
    ("GET", r"/v1/payment_methods/([^/]+)", "get", EXPAND),
    ("POST", r"/v1/payment_intents", "create_payment_intent", PAYMENT_INTENT_PARAMS),
    ("GET", r"/v1/payment_intents/([^/]+)", "get", EXPAND | {"client_secret"}),
    ("GET", r"/v1/charges/([^/]+)", "get", EXPAND),
    ("POST", r"/v1/checkout/sessions", "create_checkout_session", CHECKOUT_PARAMS),
    ("GET", r"/v1/checkout/sessions/([^/]+)", "get", EXPAND),
    ("POST", r"/v1/checkout/sessions/([^/]+)/expire", "expire_checkout_session", EXPAND),
    ("GET", r"/v1/setup_intents/([^/]+)", "get", EXPAND),
    ("POST", r"/v1/refunds", "create_refund", EXPAND | {
        "payment_intent", "charge", "amount", "metadata", "reason"}),
    ("GET", r"/v1/refunds/([^/]+)", "get", EXPAND),
    ("POST", r"/v1/billing_portal/sessions", "create_portal_session", EXPAND | {
        "customer", "return_url", "locale", "configuration"}),
    ("GET", r"/v1/events/([^/]+)", "get", EXPAND),
]  # fmt: skip

KINDS = {
    "cus": "customer", "pm": "payment_method", "pi": "payment_intent", "ch": "charge",
    "re": "refund", "cs": "checkout.session", "seti": "setup_intent",
    "bps": "billing_portal.session", "evt": "event",
}  # fmt: skip


RESOURCES = {  # what each GET route reads, for its "No such ..." answer
    "/v1/customers": "customer", "/v1/payment_methods": "payment_method",
    "/v1/payment_intents": "payment_intent", "/v1/charges": "charge",
    "/v1/checkout/sessions": "checkout.session",
    "/v1/setup_intents": "setup_intent", "/v1/refunds": "refund", "/v1/events": "event",
}  # fmt: skip


@dataclass
class Call:
    """One API request, as the event it causes records it."""

    method: str
    path: str
    params: Obj
    idempotency_key: str | None
    request_id: str


@dataclass
class Delivery:
    """One attempt to POST an event to the webhook URL; ``status`` None: no answer."""

    event_id: str
    type: str
    attempt: int
    status: int | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class FakeStripe:
    """Stripe on 127.0.0.1, for one test: start it with ``with FakeStripe() as stripe:``."""

    def __init__(
        self, secret_key: str = "sk_test_fake", webhook_secret: str = "whsec_test_fake"
    ) -> None:
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url: str | None = None
        self.clock: Callable[[], float] = time.time
        self.deliveries: list[Delivery] = []
        self._lock = threading.RLock()
        self._objects: dict[str, Obj] = {}
        self._private: dict[str, Obj] = {}  # what Stripe keeps but does not show
        self._idempotent: dict[str, tuple[str, int, bytes]] = {}
        self._requests: list[tuple[str, str, Obj, str | None]] = []
        self._created_intents: list[str] = []
        self._script: deque[str] = deque()
        self._queue: deque[tuple[Obj, str]] = deque()
        self._undelivered = 0
        self._deliveries = threading.Condition()
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> FakeStripe:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._threads = [
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True),
            threading.Thread(target=self._deliver_forever, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        with self._deliveries:
            self._stopping = True
            self._deliveries.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeStripe is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- for the tests -------------------------------------------------------------------

    def script(self, *outcomes: str) -> None:
        """The next off-session confirmations answer these ("succeeded", "card_declined",
        "authentication_required") whatever the card; then cards decide again."""
        unknown = set(outcomes) - {"succeeded", *SCRIPTED}
        assert not unknown, f"unknown outcomes {unknown}"
        with self._lock:
            self._script.extend(outcomes)

    @property
    def requests(self) -> list[tuple[str, str, Obj, str | None]]:
        """Every request received: (method, path, params, idempotency key)."""
        with self._lock:
            return list(self._requests)

    def payment_intents_created(self) -> list[Obj]:
        """The PaymentIntents really created (an idempotent replay creates none), as now."""
        with self._lock:
            return [copy.deepcopy(self._objects[id_]) for id_ in self._created_intents]

    def get(self, id_: str) -> Obj:
        """Any object by id, as it is now."""
        with self._lock:
            return copy.deepcopy(self._objects[id_])

    def save_card(self, customer_id: str, number: str = "4242424242424242") -> str:
        """A card attached to the customer, as a returning customer's would be."""
        with self._lock:
            pm = self._new_payment_method(number, 12, int(time.strftime("%Y")) + 3)
            self._attach(pm, customer_id, call=None)
            return str(pm["id"])

    def refund_from_dashboard(
        self, payment_intent: str, amount: int | None = None, reason: str | None = None
    ) -> Obj:
        """An operator refunds a payment (all that is left, or ``amount``) in Stripe's
        dashboard: no API call of ours, but the same refund and events as one, the events
        delivered to ``webhook_url``. The refund; a ``StripeError`` as the dashboard shows."""
        params = {"amount": None if amount is None else str(amount), "reason": reason}
        with self._lock:
            charge = self._refundable_charge(payment_intent)
            found = {k: v for k, v in params.items() if v is not None}
            return copy.deepcopy(self._refund(charge, found, call=None))

    def event(self, type_: str, obj: Obj) -> Obj:
        """An Event carrying ``obj`` (kept, so GET /v1/events/{id} finds it; not sent)."""
        with self._lock:
            return self._event(type_, obj, call=None, send=False)

    def sign(self, payload: str, timestamp: int | None = None, secret: str | None = None) -> str:
        """The ``Stripe-Signature`` header Stripe would send with this body."""
        when = int(time.time()) if timestamp is None else timestamp
        return sign(payload, secret or self.webhook_secret, when)

    def deliver(self, event: Obj) -> int | None:
        """POST an event to the webhook URL now, signed; its status (None: no answer)."""
        assert self.webhook_url, "set webhook_url first"
        status = self._post(self.webhook_url, json.dumps(event))
        with self._deliveries:
            attempt = 1 + sum(d.event_id == event["id"] for d in self.deliveries)
            self.deliveries.append(Delivery(event["id"], event["type"], attempt, status))
        return status

    def wait_for_deliveries(self, timeout: float = 10) -> list[Delivery]:
        """Block until every event queued so far was delivered or given up; the attempts."""
        with self._deliveries:
            if not self._deliveries.wait_for(lambda: self._undelivered == 0, timeout):
                raise TimeoutError(f"{self._undelivered} webhook events still undelivered")
            return list(self.deliveries)

    def events(self, type_: str | None = None) -> list[Obj]:
        """The events created so far, oldest first."""
        with self._lock:
            found = [o for o in self._objects.values() if o["object"] == "event"]
            return [copy.deepcopy(e) for e in found if type_ in (None, e["type"])]

    # --- the HTTP side -------------------------------------------------------------------

    def handle_api(
        self, method: str, path: str, params: Obj, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """One /v1 request: authentication, idempotency, then the endpoint."""
        key = headers.get("idempotency-key")
        with self._lock:
            self._requests.append((method, path, copy.deepcopy(params), key))
            request_id = "req_" + _random(14)
            extra = {"Request-Id": request_id}
            auth = headers.get("authorization", "")
            if auth != f"Bearer {self.secret_key}":
                return 401, _unauthorized(auth), extra
            fingerprint = json.dumps([method, path, params], sort_keys=True)
            if method == "POST" and key and key in self._idempotent:
                first, status, body = self._idempotent[key]
                if first != fingerprint:
                    return 400, _idempotency_error(key), extra
                return status, body, extra | {"Idempotent-Replayed": "true"}
            status, answer = self._route(Call(method, path, params, key, request_id))
            body = json.dumps(answer, indent=2).encode()
            # Stripe keeps the result of any request that started executing, failures too.
            if method == "POST" and key and status in (200, 402, 404):
                self._idempotent[key] = (fingerprint, status, body)
            if key:
                extra["Idempotency-Key"] = key
            return status, body, extra

    def _route(self, call: Call) -> tuple[int, Obj]:
        for method, pattern, name, accepted in ROUTES:
            match = re.fullmatch(pattern, call.path)
            if method == call.method and match:
                try:
                    for unknown in set(call.params) - accepted:
                        message = f"Received unknown parameter: {unknown}"
                        raise invalid(message, unknown, "parameter_unknown")
                    answer = getattr(self, "_" + name)(call, *match.groups())
                    return 200, self._expanded(answer, call.params.get("expand") or [])
                except StripeError as error:
                    return error.status, {"error": error.error}
        message = f"Unrecognized request URL ({call.method}: {call.path})."
        return 404, {"error": {"type": "invalid_request_error", "message": message}}

    def _get(self, call: Call, id_: str) -> Obj:
        return self._find(id_, RESOURCES[call.path.rsplit("/", 1)[0]])

    def _expanded(self, obj: Obj, paths: list[str]) -> Obj:
        """The object with the ids named by ``expand[]`` replaced by their objects."""
        shown = copy.deepcopy(obj)
        for path in sorted(paths, key=len):
            node: Any = shown
            *parents, leaf = path.split(".")
            for part in parents:  # expanding a.b expands a too, as Stripe does
                if isinstance(node, dict) and isinstance(node.get(part), str):
                    node[part] = copy.deepcopy(self._find(node[part], param="expand"))
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and isinstance(node.get(leaf), str):
                node[leaf] = copy.deepcopy(self._find(node[leaf], param="expand"))
        return shown

    # --- objects -------------------------------------------------------------------------

    def _new(self, prefix: str, **fields: Any) -> Obj:
        id_ = f"{prefix}_{_random(24)}"
        if prefix == "cs":
            id_ = f"cs_test_{_random(58)}"
        obj = {"id": id_, "object": KINDS[prefix], "created": int(self.clock())}
        obj.update(fields)
        obj["livemode"] = False
        self._objects[id_] = obj
        return obj

    def _find(self, id_: str, kind: str | None = None, param: str | None = None) -> Obj:
        obj = self._objects.get(str(id_))
        expected = kind or KINDS.get(str(id_).split("_", 1)[0], "object")
        if obj is None or obj["object"] != expected:
            raise missing(expected, str(id_), param)
        if obj.get("status") == "open" and self.clock() >= obj.get("expires_at", 1e12):
            obj.update(status="expired", url=None)  # a checkout session past its time
        return obj

    def _event(self, type_: str, obj: Obj, call: Call | None, send: bool = True) -> Obj:
        """An Event with the object as it is now, queued for the webhook if one is set."""
        url = self.webhook_url if send else None
        request = {"id": call and call.request_id, "idempotency_key": call and call.idempotency_key}
        event = self._new(
            "evt",
            **{"type": type_, "api_version": API_VERSION, "pending_webhooks": int(bool(url))},
            data={"object": copy.deepcopy(obj)},
            request=request,
        )
        if url:
            with self._deliveries:
                self._queue.append((copy.deepcopy(event), url))
                self._undelivered += 1
                self._deliveries.notify_all()
        return event

    # customers

    def _create_customer(self, call: Call) -> Obj:
        return self._update_customer(call, self._new_customer()["id"])

    def _new_customer(self, email: str | None = None) -> Obj:
        return self._new(
            "cus",
            **dict.fromkeys(("name", "description", "phone", "address", "currency")),
            email=email,
            balance=0,
            delinquent=False,
            invoice_settings={"default_payment_method": None, "footer": None},
            metadata={},
        )

    def _update_customer(self, call: Call, id_: str) -> Obj:
        customer = self._find(id_, "customer")
        params = call.params
        for name in ("email", "name", "description", "phone"):
            if name in params:
                customer[name] = params[name] or None
        customer["metadata"] = metadata(params, base=customer["metadata"])
        settings = params.get("invoice_settings") or {}
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"] or None
            if pm_id and self._find(pm_id, "payment_method")["customer"] != id_:
                raise missing("PaymentMethod", pm_id, "invoice_settings[default_payment_method]")
            customer["invoice_settings"]["default_payment_method"] = pm_id
        return customer

    # payment methods

    def _create_payment_method(self, call: Call) -> Obj:
        if required(call.params, "type") != "card":
            raise invalid("This fake Stripe only knows card payment methods.", "type")
        card = call.params.get("card") or {}
        number = str(required(card, "number")).replace(" ", "")
        month, year = integer(card, "exp_month"), integer(card, "exp_year")
        return self._new_payment_method(number, month, year, call.params)

    def _new_payment_method(
        self, number: str, exp_month: int, exp_year: int, params: Obj | None = None
    ) -> Obj:
        if not luhn_valid(number):
            raise card_error("Your card number is incorrect.", "incorrect_number", "number")
        if not 1 <= exp_month <= 12:
            message = "Your card's expiration month is invalid."
            raise card_error(message, "invalid_expiry_month", "exp_month")
        exp_year = exp_year + 2000 if exp_year < 100 else exp_year
        card = card_behaviour(number)
        pm = self._new(
            "pm",
            type="card",
            customer=None,
            billing_details=(params or {}).get("billing_details")
            or dict.fromkeys(("address", "email", "name", "phone")),
            card={
                "brand": card.brand,
                "last4": number[-4:],
                "exp_month": exp_month,
                "exp_year": exp_year,
                "country": card.country,
                "funding": card.funding,
                "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16],
                "checks": {"cvc_check": "pass"},
            },
            metadata=metadata(params or {}),
        )
        self._private[pm["id"]] = {"number": number}
        return pm

    def _card_of(self, pm: Obj) -> CardBehaviour:
        return card_behaviour(self._private[pm["id"]]["number"])

    def _attach(self, pm: Obj, customer_id: str, call: Call | None) -> Obj:
        self._find(customer_id, "customer", param="customer")
        if pm["customer"] not in (None, customer_id):
            raise invalid(
                "The payment method you provided has already been attached to a customer."
            )
        if pm["customer"] is None:
            pm["customer"] = customer_id
            self._event("payment_method.attached", pm, call)
        return pm

    def _attach_payment_method(self, call: Call, id_: str) -> Obj:
        pm = self._find(id_, "payment_method")
        return self._attach(pm, required(call.params, "customer"), call)

    # payment intents

    def _create_payment_intent(self, call: Call) -> Obj:
        params = call.params
        amount = integer(params, "amount")
        if amount < 1:
            raise invalid("This value must be greater than or equal to 1.", "amount")
        currency = str(required(params, "currency")).lower()
        customer = params.get("customer") or None
        if customer:
            self._find(customer, "customer", param="customer")
        pm_id = params.get("payment_method") or None
        pm = self._find(pm_id, "payment_method", param="payment_method") if pm_id else None
        off_session = boolean(params, "off_session")
        confirm = boolean(params, "confirm")
        if off_session and not confirm:
            raise invalid("off_session can only be used with confirm=true.", "off_session")
        if pm and pm["customer"] and pm["customer"] != customer:
            message = f"The provided PaymentMethod {pm_id} is attached to another Customer."
            raise invalid(message, "payment_method")
        if confirm and pm is None:
            message = "You cannot confirm this PaymentIntent because it's missing a payment method."
            raise invalid(message, "payment_method", "payment_intent_unexpected_state")
        intent = self._new_intent(
            **pick(params, "customer", "payment_method", "description", "setup_future_usage"),
            **{"amount": amount, "currency": currency},
            metadata=metadata(params),
        )
        if confirm and pm is not None:
            decline = self._confirm(intent, pm, off_session, call)
            if decline:
                raise self._card_error(intent, pm, decline)
        return intent

    def _new_intent(self, **fields: Any) -> Obj:
        intent = self._new(
            "pi",
            **dict.fromkeys(("canceled_at", "cancellation_reason", "last_payment_error")),
            **dict.fromkeys(("latest_charge", "next_action", "receipt_email")),
            amount_capturable=0,
            amount_received=0,
            capture_method="automatic",
            confirmation_method="automatic",
            payment_method_types=["card"],
            status="requires_" + ("confirmation" if fields["payment_method"] else "payment_method"),
            **fields,
        )
        intent["client_secret"] = f"{intent['id']}_secret_{_random(25)}"
        self._created_intents.append(intent["id"])
        return intent

    def _confirm(
        self, intent: Obj, pm: Obj, off_session: bool, call: Call | None
    ) -> Decline | None:
        """Charge the card; the PaymentIntent ends succeeded or back at requires_payment_method."""
        card = self._card_of(pm)
        decline = card.decline
        if off_session and card.needs_authentication:
            decline = AUTHENTICATE
        if off_session and self._script:
            outcome = self._script.popleft()
            decline = SCRIPTED.get(outcome)
        intent["payment_method"] = pm["id"]
        charge = None
        if decline is not AUTHENTICATE:  # no charge is attempted before authentication
            charge = self._new_charge(intent, pm, decline)
            intent["latest_charge"] = charge["id"]
        if decline:
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": decline.code,
                "decline_code": decline.decline_code,
                "message": decline.message,
                "charge": charge["id"] if charge else None,
                "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
                "payment_method": copy.deepcopy(pm),
            }
            self._event("payment_intent.payment_failed", intent, call)
            return decline
        intent["status"] = "succeeded"
        intent["amount_received"] = intent["amount"]
        intent["last_payment_error"] = None
        if intent["setup_future_usage"] and intent["customer"]:
            self._attach(pm, intent["customer"], call)
        self._event("payment_intent.succeeded", intent, call)
        return None

    def _new_charge(self, intent: Obj, pm: Obj, decline: Decline | None) -> Obj:
        paid = decline is None
        return self._new(
            "ch",
            **pick(intent, "amount", "currency", "customer", "description"),
            metadata=dict(intent["metadata"]),
            **{"amount_captured": intent["amount"] if paid else 0, "amount_refunded": 0},
            **{"paid": paid, "captured": paid, "refunded": False},
            failure_code=decline and decline.code,
            failure_message=decline and decline.message,
            outcome={"type": "authorized" if paid else "issuer_declined"},
            payment_intent=intent["id"],
            payment_method=pm["id"],
            payment_method_details={"type": "card", "card": dict(pm["card"])},
            status="succeeded" if paid else "failed",
        )

    def _card_error(self, intent: Obj, pm: Obj, decline: Decline) -> StripeError:
        return card_error(
            decline.message,
            decline.code,
            decline_code=decline.decline_code,
            charge=intent["latest_charge"] if decline is not AUTHENTICATE else None,
            doc_url=intent["last_payment_error"]["doc_url"],
            payment_intent=copy.deepcopy(intent),
            payment_method=copy.deepcopy(pm),
            request_log_url=f"https://dashboard.stripe.com/test/logs/req_{_random(14)}",
        )

    # checkout

    def _create_checkout_session(self, call: Call) -> Obj:
        params = call.params
        mode = required(params, "mode")
        if mode not in ("payment", "setup"):
            raise invalid(f"Invalid mode: {mode}; must be one of payment or setup", "mode")
        required(params, "success_url")
        if params.get("customer"):
            self._find(params["customer"], "customer", param="customer")
        currency = (params.get("currency") or "").lower() or None
        amount = None
        if mode == "payment":
            amount, currency = self._line_items_total(params)
        created = int(self.clock())
        session = self._new(
            "cs",
            **pick(params, "mode", "customer", "success_url", "cancel_url", "client_reference_id"),
            **pick(params, "customer_email", "locale"),
            **dict.fromkeys(("customer_details", "payment_intent", "setup_intent", "url")),
            **{"status": "open", "payment_status": "unpaid", "ui_mode": "hosted"},
            **{"amount_subtotal": amount, "amount_total": amount, "currency": currency},
            expires_at=integer(params, "expires_at", created + CHECKOUT_LIFETIME),
            metadata=metadata(params),
            payment_method_types=["card"],
        )
        session["url"] = f"{self.url}/pay/{session['id']}"
        data = {"payment": "payment_intent_data", "setup": "setup_intent_data"}[mode]
        self._private[session["id"]] = {"intent_data": params.get(data) or {}}
        return session

    def _line_items_total(self, params: Obj) -> tuple[int, str]:
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            message = "You must specify `line_items` in `payment` mode."
            raise invalid(message, "line_items", "parameter_missing")
        total, currencies = 0, set()
        for i, item in enumerate(items):
            price = item.get("price_data")
            if not isinstance(price, dict):
                raise invalid("This fake Stripe only knows price_data.", f"line_items[{i}]")
            currencies.add(str(required(price, "currency")).lower())
            required(price.get("product_data") or {}, "name")
            total += integer(price, "unit_amount") * integer(item, "quantity")
        if len(currencies) != 1:
            raise invalid("All line items must have the same currency.", "line_items")
        return total, currencies.pop()

    def _expire_checkout_session(self, call: Call, id_: str) -> Obj:
        session = self._find(id_, "checkout.session")
        if session["status"] != "open":
            raise invalid('Only Checkout Sessions with a status in ["open"] can be expired.', None)
        session.update(status="expired", url=None)
        return session

    def complete_checkout(self, session_id: str, number: str, exp: str = "") -> str | None:
        """The customer pays (or saves a card) on the hosted page; the error shown, if any."""
        with self._lock:
            session = self._find(session_id, "checkout.session")
            if session["status"] != "open":
                return "This Checkout Session is no longer active."
            month, year = _expiry(exp)
            try:
                pm = self._new_payment_method(number.replace(" ", ""), month, year)
            except StripeError as error:
                return str(error)
            if session["customer"] is None:
                session["customer"] = self._new_customer(session["customer_email"])["id"]
            data = self._private[session_id]["intent_data"]
            if session["mode"] == "payment":
                decline = self._pay_on_session(session, pm, data)
            else:
                decline = self._set_up(session, pm, data)
            if decline:
                return decline.message
            email = self._objects[session["customer"]]["email"] or session["customer_email"]
            paid = "paid" if session["mode"] == "payment" else "no_payment_required"
            session.update(status="complete", url=None, payment_status=paid)
            session["customer_details"] = {"email": email, "name": None}
            self._event("checkout.session.completed", session, call=None)
            return None

    def _pay_on_session(self, session: Obj, pm: Obj, data: Obj) -> Decline | None:
        intent = self._objects.get(session["payment_intent"] or "")
        if intent is None:
            intent = self._new_intent(
                **pick(data, "description", "setup_future_usage"),
                payment_method=None,
                **{"amount": session["amount_total"], "currency": session["currency"]},
                customer=session["customer"],
                metadata=metadata(data),
            )
            session["payment_intent"] = intent["id"]
        # On the page the customer passes 3D Secure, so only the card's own declines remain.
        return self._confirm(intent, pm, off_session=False, call=None)

    def _set_up(self, session: Obj, pm: Obj, data: Obj) -> Decline | None:
        card = self._card_of(pm)
        if card.decline and not card.sets_up:
            return card.decline  # the bank refuses to set the card up
        self._attach(pm, session["customer"], call=None)
        intent = self._new(
            "seti",
            **{"status": "succeeded", "usage": "off_session", "last_setup_error": None},
            **{"customer": session["customer"], "payment_method": pm["id"]},
            payment_method_types=["card"],
            metadata=metadata(data),
        )
        session["setup_intent"] = intent["id"]
        self._event("setup_intent.succeeded", intent, call=None)
        return None

    # refunds

    def _create_refund(self, call: Call) -> Obj:
        params = call.params
        if params.get("payment_intent"):
            charge = self._refundable_charge(params["payment_intent"])
        else:
            charge = self._find(required(params, "charge"), "charge", "charge")
        return self._refund(charge, params, call)

    def _refundable_charge(self, intent_id: str) -> Obj:
        intent = self._find(intent_id, "payment_intent", "payment_intent")
        charge = self._objects.get(intent["latest_charge"] or "")
        if intent["status"] != "succeeded" or charge is None:
            message = f"This PaymentIntent ({intent['id']}) has no successful charge to refund."
            raise invalid(message, "payment_intent")
        return charge

    def _refund(self, charge: Obj, params: Obj, call: Call | None) -> Obj:
        """Refund (part of) a charge, as the API or the dashboard does: the refund, then
        ``refund.created`` and ``charge.refunded`` with the charge's new totals."""
        left = charge["amount_captured"] - charge["amount_refunded"]
        if left <= 0:
            message = f"Charge {charge['id']} has already been refunded."
            raise invalid(message, code="charge_already_refunded")
        amount = integer(params, "amount", left)
        if amount < 1 or amount > left:
            message = (
                f"Refund amount ({money(amount, charge['currency'])}) is greater than "
                f"unrefunded amount on charge ({money(left, charge['currency'])})"
            )
            raise invalid(message, "amount", "amount_too_large")
        refund = self._new(
            "re",
            **{"amount": amount, "charge": charge["id"], "currency": charge["currency"]},
            **{"payment_intent": charge["payment_intent"], "status": "succeeded"},
            reason=params.get("reason") or None,
            metadata=metadata(params),
        )
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        self._event("refund.created", refund, call)
        self._event("charge.refunded", charge, call)
        return refund

    # billing portal and events

    def _create_portal_session(self, call: Call) -> Obj:
        customer = self._find(required(call.params, "customer"), "customer", "customer")
        session = self._new(
            "bps",
            **pick(call.params, "return_url", "locale"),
            customer=customer["id"],
            configuration=f"bpc_{_random(24)}",
        )
        session["url"] = f"{self.url}/portal/{session['id']}"
        return session

    # --- webhook delivery ----------------------------------------------------------------

    def _deliver_forever(self) -> None:
        """Post queued events one at a time, in order, retrying failures with backoff."""
        while True:
            with self._deliveries:
                self._deliveries.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                event, url = self._queue[0]
            body = json.dumps(event, indent=2)
            for attempt in range(1, DELIVERY_ATTEMPTS + 1):
                status = self._post(url, body)
                with self._deliveries:
                    self.deliveries.append(Delivery(event["id"], event["type"], attempt, status))
                    delivered = status is not None and 200 <= status < 300
                    if delivered or attempt == DELIVERY_ATTEMPTS:
                        break
                    # Wait on the condition, so closing the fake cuts the backoff short.
                    self._deliveries.wait(DELIVERY_BACKOFF * 2 ** (attempt - 1))
                    if self._stopping:
                        return
            with self._lock:
                self._objects[event["id"]]["pending_webhooks"] = 0 if delivered else 1
            with self._deliveries:
                self._queue.popleft()
                self._undelivered -= 1
                self._deliveries.notify_all()

    def _post(self, url: str, body: str) -> int | None:
        request = urllib.request.Request(
            url,
            data=body.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Stripe-Signature": self.sign(body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            with error:
                return int(error.code)
        except OSError:
            return None


def _random(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def _expiry(text: str) -> tuple[int, int]:
    """``MM / YY`` from the page's expiry field; a card good for years when left empty."""
    found = re.fullmatch(r"\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*", text or "")
    if not found:
        return 12, int(time.strftime("%Y")) + 5
    return int(found[1]), int(found[2])


def _idempotency_error(key: str) -> bytes:
    message = (
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request."
    )
    return json.dumps({"error": {"type": "idempotency_error", "message": message}}).encode()


def _unauthorized(auth: str) -> bytes:
    if not auth:
        message = (
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY')."
        )
    else:
        shown = auth.removeprefix("Bearer ")
        if len(shown) > 12:
            shown = shown[:8] + "*" * (len(shown) - 12) + shown[-4:]
        message = f"Invalid API Key provided: {shown}"
    return json.dumps({"error": {"type": "invalid_request_error", "message": message}}).encode()


# --- the hosted pages --------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}
label,input,button{{display:block;margin:.4rem 0}}input{{padding:.4rem;width:100%}}
.error{{color:#b00020}}</style></head>
<body><main>{body}</main></body></html>
"""


def checkout_page(session: Obj, error: str | None = None) -> str:
    """The hosted checkout page: one card form, a pay button and a way back."""
    setup = session["mode"] == "setup"
    title = "Save a card" if setup else f"Pay {money(session['amount_total'], session['currency'])}"
    if session["status"] != "open":
        body = f"<h1>{title}</h1><p>This Checkout Session is no longer active.</p>"
        return PAGE.format(title=html.escape(title), body=body)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if error:
        parts.append(f'<p class="error" role="alert">{html.escape(error)}</p>')
    parts.append(
        f'<form method="post" action="/pay/{session["id"]}">'
        '<label for="card-number">Card number</label>'
        '<input id="card-number" name="card_number" inputmode="numeric" '
        'autocomplete="cc-number" required>'
        '<label for="card-expiry">Expiry (MM / YY)</label>'
        '<input id="card-expiry" name="exp" autocomplete="cc-exp">'
        '<label for="card-cvc">CVC</label>'
        '<input id="card-cvc" name="cvc" autocomplete="cc-csc">'
        f'<button id="pay" type="submit">{"Save card" if setup else "Pay"}</button></form>'
    )
    if session["cancel_url"]:
        parts.append(f'<p><a href="{html.escape(session["cancel_url"])}">Back</a></p>')
    return PAGE.format(title=html.escape(title), body="".join(parts))


def portal_page(session: Obj) -> str:
    back = html.escape(session["return_url"] or "/")
    body = f'<h1>Billing</h1><p><a id="return" href="{back}">Return</a></p>'
    return PAGE.format(title="Billing", body=body)


class _Handler(BaseHTTPRequestHandler):
    """HTTP for the fake: the API under /v1, the hosted pages under /pay and /portal."""

    server_version = "stripe"
    sys_version = ""

    @property
    def fake(self) -> FakeStripe:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read fake.requests instead

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode() if length else ""
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        pairs += parse_qsl(form, keep_blank_values=True)
        params = parse_form(pairs)
        if parts.path.startswith(("/pay/", "/portal/")):
            self._page(method, parts.path, params)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra = self.fake.handle_api(method, parts.path, params, headers)
        self._send(status, body, "application/json", extra)

    def _page(self, method: str, path: str, params: Obj) -> None:
        fake = self.fake
        with fake._lock:
            fake._requests.append((method, path, copy.deepcopy(params), None))
        kind, _, id_ = path.strip("/").partition("/")
        try:
            with fake._lock:
                obj = copy.deepcopy(fake._find(id_, KINDS["cs" if kind == "pay" else "bps"]))
        except StripeError:
            self._send(404, b"<h1>Not found</h1>", "text/html; charset=utf-8")
            return
        if kind == "portal":
            self._send(200, portal_page(obj).encode(), "text/html; charset=utf-8")
        elif method == "POST":
            error = fake.complete_checkout(
                id_, str(params.get("card_number", "")), params.get("exp", "")
            )
            if error is None:
                target = str(obj["success_url"]).replace("{CHECKOUT_SESSION_ID}", id_)
                self._send(303, b"", "text/html", {"Location": target})
            else:
                page = checkout_page(fake.get(id_), error)
                self._send(402, page.encode(), "text/html; charset=utf-8")
        else:
            status = 200 if obj["status"] == "open" else 410
            self._send(status, checkout_page(obj).encode(), "text/html; charset=utf-8")

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
