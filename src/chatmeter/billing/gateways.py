"""Payment gateways: a small interface, shaped like a card processor's.

A charge answers at once with one of three outcomes. ``succeeded`` and
``failed`` are final; ``pending`` means the gateway confirms later (a
processor's webhook, or the operator's ``chatmeter invoices mark-paid``),
which arrives through ``billing.charges.confirm_payment`` or
``billing.charges.reject_payment``. Each request carries an idempotency key
that is stable across retries of one attempt, so a crash and a retry never
charge twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    invoice_id: int
    account_id: int
    amount_cents: int
    currency: str
    description: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class ChargeResult:
    status: ChargeStatus
    reference: str | None = None
    reason: str | None = None


class PaymentGateway(Protocol):
    name: str

    def charge(self, request: ChargeRequest) -> ChargeResult: ...


class ManualGateway:
    """Invoices settled by hand (bank transfer, a separate terminal...).

    In demo and test installations it approves at once; otherwise the invoice
    waits until the operator marks it paid.
    """

    name = "manual"

    def __init__(self, *, auto_approve: bool) -> None:
        self.auto_approve = auto_approve

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if self.auto_approve:
            return ChargeResult(
                ChargeStatus.SUCCEEDED, reference=f"manual:{request.idempotency_key}"
            )
        return ChargeResult(ChargeStatus.PENDING, reference=None)
