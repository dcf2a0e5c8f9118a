"""The customer's billing details: the name, address and tax id its invoices show.

The account's owner edits them (panel, API, and the operator's CLI); every way in goes
through ``parse``, so the same input is refused alike everywhere with nothing changed.
Until a billing name is set, invoices name the account by its name and contact email.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from chatmeter.billing.models import BillingProfile
from chatmeter.billing.profiles import get_or_create
from chatmeter.errors import InvalidInput

MAX_NAME = 200
MAX_ADDRESS = 500
MAX_ADDRESS_LINES = 6
MAX_TAX_ID = 64
TAX_ID = re.compile(r"[A-Za-z0-9 ./-]*")

NAME_MESSAGE = f"the billing name must be at most {MAX_NAME} characters on one line"
ADDRESS_MESSAGE = (
    f"the billing address must be at most {MAX_ADDRESS} characters on at most "
    f"{MAX_ADDRESS_LINES} lines"
)
TAX_ID_MESSAGE = (
    f"the tax id must be at most {MAX_TAX_ID} characters: letters, digits, spaces, "
    "dots, hyphens and slashes"
)


@dataclass(frozen=True)
class BillingDetails:
    """The customer's own words for its invoices; empty text where nothing is set."""

    name: str = ""
    address: str = ""
    tax_id: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "address": self.address, "tax_id": self.tax_id}


def read(session: Session, *, account_id: int) -> BillingDetails:
    """The billing details as they stand, without writing anything."""
    profile = session.get(BillingProfile, account_id)
    if profile is None:
        return BillingDetails()
    return BillingDetails(profile.billing_name, profile.billing_address, profile.tax_id)


def parse(*, name: object, address: object, tax_id: object) -> BillingDetails:
    """Billing details as typed, tidied (spaces around, Windows line ends), or
    ``InvalidInput`` naming the first field that is wrong."""
    clean_name = _text(name, NAME_MESSAGE, "name").strip()
    if len(clean_name) > MAX_NAME or not clean_name.isprintable():
        raise InvalidInput(NAME_MESSAGE, field="name")
    raw_address = _text(address, ADDRESS_MESSAGE, "address")
    lines = [line.strip() for line in raw_address.replace("\r\n", "\n").split("\n")]
    clean_address = "\n".join(lines).strip("\n")
    if (
        len(clean_address) > MAX_ADDRESS
        or clean_address.count("\n") >= MAX_ADDRESS_LINES
        or not all(line.isprintable() for line in lines)
    ):
        raise InvalidInput(ADDRESS_MESSAGE, field="address")
    clean_tax_id = _text(tax_id, TAX_ID_MESSAGE, "tax_id").strip()
    if len(clean_tax_id) > MAX_TAX_ID or not TAX_ID.fullmatch(clean_tax_id):
        raise InvalidInput(TAX_ID_MESSAGE, field="tax_id")
    return BillingDetails(clean_name, clean_address, clean_tax_id)


def change(
    session: Session, *, account_id: int, new: BillingDetails, now: dt.datetime
) -> BillingProfile:
    """Write the billing details (already ``parse``d); the card stays as it is."""
    profile = get_or_create(session, account_id)
    profile.billing_name = new.name
    profile.billing_address = new.address
    profile.tax_id = new.tax_id
    profile.updated_at = now
    session.flush()
    return profile


def _text(value: object, message: str, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(message, field=field)
    return value
