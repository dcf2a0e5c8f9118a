"""Payment gateways: a small interface, shaped like a card processor's.

A charge answers at once with one of four outcomes. ``succeeded`` and
``failed`` are final; ``pending`` means the gateway confirms later (a
processor's webhook, or the operator's ``chatmeter invoices mark-paid``);
``action_required`` is pending too, but waits for the customer (a card asking
for 3-D Secure): the customer is emailed a link to the panel, which opens the
gateway's hosted page for that invoice. Confirmations arrive through
``billing.charges.confirm_payment`` or ``billing.charges.reject_payment``.
Each request carries an idempotency key that is stable across retries of one
attempt, so a crash and a retry never charge twice.

A gateway with ``hosted_checkout`` takes an account's first payment on its own
page (which also saves the card for later charges made without the customer);
one without (the manual gateway) charges every invoice directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    ACTION_REQUIRED = "action_required"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    invoice_id: int
    account_id: int
    amount_cents: int
    currency: str
    description: str
    idempotency_key: str
    # The gateway's own references for the customer and its saved card, when it has them.
    customer: str | None = None
    card: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeResult:
    status: ChargeStatus
    reference: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Customer:
    """Who pays, as the gateway is told on its first payment."""

    account_id: int
    email: str
    name: str
    reference: str | None = None  # the gateway's customer, once it has one


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """A hosted page where the customer pays one invoice and saves the card."""

    invoice_id: int
    amount_cents: int
    currency: str
    description: str
    customer: str
    success_url: str
    cancel_url: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class HostedPage:
    url: str
    reference: str  # the gateway's id of the page's session


@dataclass(frozen=True, slots=True)
class SavedCard:
    reference: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class RefundResult:
    succeeded: bool
    reference: str | None = None
    reason: str | None = None


class PaymentGateway(Protocol):
    name: str
    hosted_checkout: bool

    def charge(self, request: ChargeRequest) -> ChargeResult: ...

    def refund(
        self, *, reference: str | None, amount_cents: int, idempotency_key: str
    ) -> RefundResult: ...


class ManualGateway:
    """Invoices settled by hand (bank transfer, a separate terminal...).

    In demo and test installations it approves at once; otherwise the invoice
    waits until the operator marks it paid. A refund is paid back by hand too:
    the gateway records it and the operator sends the money.
    """

    name = "manual"
    hosted_checkout = False

    def __init__(self, *, auto_approve: bool) -> None:
        self.auto_approve = auto_approve

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if self.auto_approve:
            return ChargeResult(
                ChargeStatus.SUCCEEDED, reference=f"manual:{request.idempotency_key}"
            )
        return ChargeResult(ChargeStatus.PENDING, reference=None)

    def refund(
        self, *, reference: str | None, amount_cents: int, idempotency_key: str
    ) -> RefundResult:
        return RefundResult(True, reference=f"manual:{idempotency_key}")
