"""Imports every table so that ``Base.metadata`` knows the whole schema."""

from chatmeter.accounts.models import Account, ApiKey
from chatmeter.billing.models import Invoice, Subscription
from chatmeter.db import Base
from chatmeter.idempotency import IdempotencyRecord
from chatmeter.jobs.models import JobLease
from chatmeter.ledger.models import Balance, Grant, Hold, HoldAllocation, LedgerEntry
from chatmeter.notifications.models import OutboxMessage

__all__ = [
    "Account",
    "ApiKey",
    "Balance",
    "Base",
    "Grant",
    "Hold",
    "HoldAllocation",
    "IdempotencyRecord",
    "Invoice",
    "JobLease",
    "LedgerEntry",
    "OutboxMessage",
    "Subscription",
]
