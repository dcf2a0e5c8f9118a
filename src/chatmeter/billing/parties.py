"""Who an invoice is from and to, fixed when it is issued.

An issued invoice is a record: the seller's name, address and tax id and the
customer's must read the same in a year as on the day it was made, whatever either
changes later (a new address, a tax id added after the first purchase). So
``new_invoice`` freezes both parties on the invoice as they stand (``issued``), and
the PDF reads them from there (``of``). Changed billing details apply to invoices
issued from then on, as the billing page says.

Invoices issued before the parties were kept (the column is empty) show the parties as
they are now: nothing else is known of them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import details as billing_details
from chatmeter.config import Settings


@dataclass(frozen=True)
class Party:
    """A seller or a customer as the invoice names it: a name, lines under it, a tax id."""

    name: str
    lines: tuple[str, ...] = ()
    tax_id: str = ""


@dataclass(frozen=True)
class Parties:
    seller: Party
    customer: Party

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> Parties:
        data = json.loads(text)
        return cls(_party(data["seller"]), _party(data["customer"]))


def issued(session: Session, settings: Settings, *, account: Account) -> Parties:
    """Both parties as they stand now: what a new invoice keeps."""
    found = billing_details.read(session, account_id=account.id)
    return Parties(seller(settings), customer(account, found))


def of(
    session: Session, settings: Settings, *, invoice_parties: str | None, account: Account
) -> Parties:
    """The parties an invoice was issued with; for one issued before they were kept, today's."""
    if invoice_parties:
        return Parties.loads(invoice_parties)
    return issued(session, settings, account=account)


def seller(settings: Settings) -> Party:
    """The operator, from its settings; the address's lines are split at newlines or at
    a written ``\\n`` (an environment variable rarely holds a real newline)."""
    address = settings.business_address.replace("\\n", "\n")
    rows = tuple(line.strip() for line in address.splitlines() if line.strip())
    return Party(settings.business_name, rows, settings.business_tax_id.strip())


def customer(account: Account, details: billing_details.BillingDetails) -> Party:
    """The customer by its billing details; without a billing name, by the account's name
    and contact email."""
    address = tuple(line for line in details.address.splitlines() if line.strip())
    if details.name:
        return Party(details.name, address, details.tax_id)
    return Party(account.name, (*address, account.contact_email), details.tax_id)


def _party(data: dict[str, object]) -> Party:
    lines = data.get("lines", ())
    return Party(
        str(data["name"]),
        tuple(str(line) for line in lines) if isinstance(lines, list | tuple) else (),
        str(data.get("tax_id", "")),
    )
