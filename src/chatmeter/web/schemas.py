"""Request and response bodies of the REST API.

Requests are strict: a number must be a JSON integer (no ``"12"``, no
``1.5``, no ``true``), unknown fields are refused, and no text holds a NUL
character (``chatmeter.storable``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from chatmeter.billing.subscriptions import MAX_PACKAGES, MIN_PACKAGES
from chatmeter.ledger.rules import MAX_TOKENS
from chatmeter.ledger.service import MAX_HOLD_TTL_SECONDS
from chatmeter.storable import check_storable


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return check_storable(value)


Packages = Annotated[StrictInt, Field(ge=MIN_PACKAGES, le=MAX_PACKAGES)]
Tokens = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)]


class PurchaseIn(Strict):
    packages: Packages


class SubscriptionIn(Strict):
    packages: Packages


class HoldIn(Strict):
    tokens: Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS)]
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_HOLD_TTL_SECONDS)] | None = None
    key: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None


class SettleIn(Strict):
    context: Tokens
    generation: Tokens


class AccountIn(Strict):
    contact_email: Annotated[StrictStr, Field(max_length=320)] | None = None
    timezone: Annotated[StrictStr, Field(max_length=64)] | None = None
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    surge_multiple: StrictInt | StrictFloat | None = Field(
        None, description="Surge alert above this multiple of an assistant's typical day (1.5–100)."
    )
    surge_min_tokens: StrictInt | None = Field(
        None, description="No surge alert below this many tokens today."
    )


class ApiKeyIn(Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    scope: Literal["read", "all"] = Field(
        "read", description="read: GET requests only; all: everything. Never wider than yours."
    )


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    scope: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: dt.datetime | None
    active: bool


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The key itself: shown in this answer only.")


class BalanceOut(BaseModel):
    balance: int = Field(description="Tokens not yet spent: available + reserved.")
    available: int = Field(description="Tokens a new chat can reserve now.")
    reserved: int = Field(description="Tokens held by chats in progress.")
    limit: int = Field(description="Tokens granted for the current month.")
    used_this_month: int
    period: str
    renews_at: dt.datetime
    active: bool = Field(description="Assistants are shown while tokens are available.")
    low: bool = Field(description="Below 20% of the limit.")


class InvoiceOut(BaseModel):
    id: int
    number: str
    kind: str
    status: str
    period: str
    packages: int
    tokens: int
    unit_price: str = Field(description="Price of one package, before tax.")
    net: str = Field(description="packages × unit_price: the price before tax.")
    tax_rate: str = Field(description='Percent of tax on the net price, e.g. "20" or "7.5".')
    tax: str = Field(description="net × tax_rate / 100, rounded half up to the cent.")
    amount: str = Field(description="net + tax: what is charged.")
    currency: str
    created_at: dt.datetime
    paid_at: dt.datetime | None
    failure_reason: str | None
    refunded: str = Field(
        default="0.00",
        description="Refunded so far (0.00: none; equal to amount: refunded in full).",
    )
    refunded_at: dt.datetime | None = Field(
        default=None, description="When the last refund (or part of one) was written."
    )
    # Only on a purchase waiting for the owner on the gateway's page (Stripe Checkout).
    pay_url: str | None = None


class CardOut(BaseModel):
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None


class SubscriptionOut(BaseModel):
    status: str
    packages: int
    next_packages: int = Field(description="Packages the next renewal grants and charges.")
    package_tokens: int
    monthly_tokens: int
    monthly_price: str
    currency: str
    renews_at: dt.datetime


class HoldOut(BaseModel):
    id: int
    key: str
    tokens: int
    owner: str = Field(
        description="`api`: made through this API, which settles or releases it; "
        "`chat`: a chat turn's own, which settles itself"
    )
    status: str
    context: int | None
    generation: int | None
    created_at: dt.datetime
    expires_at: dt.datetime


class EntryOut(BaseModel):
    id: int
    kind: str
    available_delta: int
    reserved_delta: int
    balance_after: int
    available_after: int
    reserved_after: int
    consumed: int
    context: int
    generation: int
    expired: int
    grant_id: int | None
    hold_id: int | None
    memo: str
    created_at: dt.datetime


class LedgerPage(BaseModel):
    entries: list[EntryOut]
    next_before: int | None = Field(description="Pass as ?before= for the next page.")


class AccountOut(BaseModel):
    id: int
    name: str
    contact_email: str
    timezone: str
    created_at: dt.datetime
    surge_multiple: float = Field(description="Surge alerts above this multiple (default 3).")
    surge_min_tokens: int = Field(description="No surge alert below this many tokens today.")
