"""The card a gateway keeps for an account: which customer and card it charges, and what the
billing page shows of it (brand, last 4 digits, expiry; never the number).

The row is the account's ``BillingProfile`` (``billing.profiles``), shared with the
billing details on its invoices.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from chatmeter.billing import profiles
from chatmeter.billing.gateways import SavedCard
from chatmeter.billing.models import BillingProfile


def profile(session: Session, *, account_id: int) -> BillingProfile:
    """The account's billing profile, made empty the first time it is needed."""
    return profiles.get_or_create(session, account_id)


def saved_card(session: Session, *, account_id: int, gateway: str) -> BillingProfile | None:
    """The profile when ``gateway`` keeps a card for the account, else None."""
    found = session.get(BillingProfile, account_id)
    if found is None or found.gateway != gateway or not found.card_reference:
        return None
    return found


def customer_reference(session: Session, *, account_id: int, gateway: str) -> str | None:
    found = session.get(BillingProfile, account_id)
    if found is None or found.gateway != gateway:
        return None
    return found.customer_reference


def remember_customer(
    session: Session, *, account_id: int, gateway: str, customer: str, now: dt.datetime
) -> BillingProfile:
    row = profile(session, account_id=account_id)
    if row.gateway != gateway or row.customer_reference != customer:
        row.gateway = gateway
        row.customer_reference = customer
        _forget_card(row)
        row.updated_at = now
    return row


def save_card(
    session: Session,
    *,
    account_id: int,
    gateway: str,
    customer: str,
    card: SavedCard,
    now: dt.datetime,
) -> BillingProfile:
    """Keep ``card`` as the one later charges use (it replaces any earlier card)."""
    row = profile(session, account_id=account_id)
    row.gateway = gateway
    row.customer_reference = customer
    row.card_reference = card.reference
    row.card_brand = card.brand[:32]
    row.card_last4 = card.last4[-4:]
    row.card_exp_month = card.exp_month
    row.card_exp_year = card.exp_year
    row.updated_at = now
    return row


def _forget_card(row: BillingProfile) -> None:
    row.card_reference = None
    row.card_brand = ""
    row.card_last4 = ""
    row.card_exp_month = None
    row.card_exp_year = None
