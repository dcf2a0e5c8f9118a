"""Imports every table so that ``Base.metadata`` knows the whole schema."""

from chatmeter.accounts.models import Account, ApiKey, EmailLink, User
from chatmeter.answers.models import Correction
from chatmeter.assistants.models import Assistant
from chatmeter.billing.models import (
    AutoTopUp,
    BillingProfile,
    GatewayEvent,
    Invoice,
    Subscription,
)
from chatmeter.chat.models import Conversation, Message
from chatmeter.db import Base
from chatmeter.jobs.models import JobLease
from chatmeter.ledger.models import Balance, Grant, Hold, HoldAllocation, LedgerEntry
from chatmeter.notifications.models import OutboxMessage
from chatmeter.training.models import Chunk, FilePart, TrainingFile
from chatmeter.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "Account",
    "ApiKey",
    "Assistant",
    "AutoTopUp",
    "Balance",
    "Base",
    "BillingProfile",
    "Chunk",
    "Conversation",
    "Correction",
    "EmailLink",
    "FilePart",
    "GatewayEvent",
    "Grant",
    "Hold",
    "HoldAllocation",
    "Invoice",
    "JobLease",
    "LedgerEntry",
    "Message",
    "OutboxMessage",
    "Subscription",
    "TrainingFile",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
