"""The contact email, changed by a link to the new address: nothing changes until the
link is opened, and the old and the new address are both told when it is."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from chatmeter.accounts import links
from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account, EmailLink, LinkPurpose
from chatmeter.errors import InvalidInput
from chatmeter.ledger import service as ledger
from chatmeter.notifications.outbox import enqueue


def request_change(
    session: Session, *, account_id: int, email: object, requested_by: str, now: dt.datetime
) -> EmailLink:
    """Send a confirmation link to the new address; nothing changes until it is opened.

    A newer request replaces an older one: only the latest link works.
    """
    address = accounts.normalise_email(email)
    ledger.lock_balance(session, account_id=account_id)
    account = accounts.get_account(session, account_id=account_id)
    accounts.require_verified(account, to="change the contact email")
    if address.lower() == account.contact_email.lower():
        raise InvalidInput("this is already your contact email", field="email")
    links.withdraw(session, purpose=LinkPurpose.CONFIRM_EMAIL, account_id=account_id, now=now)
    row, token = links.issue(
        session,
        purpose=LinkPurpose.CONFIRM_EMAIL,
        account_id=account_id,
        email=address,
        now=now,
    )
    enqueue(
        session,
        kind="contact_email_confirm",
        dedupe_key=f"contact_email_confirm:{row.id}",
        to=address,
        context={
            "account_name": account.name,
            "old_email": account.contact_email,
            "new_email": address,
            "requested_by": requested_by,
            "token": token,
            "expires_at": row.expires_at.isoformat(),
        },
        now=now,
        account_id=account_id,
    )
    return row


def pending(session: Session, *, account_id: int, now: dt.datetime) -> EmailLink | None:
    """The change waiting for its confirmation link to be opened, if any."""
    waiting = links.pending(
        session, purpose=LinkPurpose.CONFIRM_EMAIL, account_id=account_id, now=now
    )
    return waiting[0] if waiting else None


def cancel(session: Session, *, account_id: int, now: dt.datetime) -> int:
    """Withdraw the pending change; its link stops working. Returns how many were pending."""
    ledger.lock_balance(session, account_id=account_id)
    return links.withdraw(
        session, purpose=LinkPurpose.CONFIRM_EMAIL, account_id=account_id, now=now
    )


def link(session: Session, *, token: object, now: dt.datetime) -> EmailLink:
    """The change a confirmation link would make, or ``UnknownLink`` / ``SpentLink``."""
    return links.find(session, purpose=LinkPurpose.CONFIRM_EMAIL, token=token, now=now)


def confirm(session: Session, *, token: object, now: dt.datetime) -> Account:
    """Make the link's address the contact email; the old and new addresses are told.

    The change itself is ``accounts.update_account``, as the REST API makes it, so
    both send the same ``contact_email_changed`` emails.
    """
    row = links.find(session, purpose=LinkPurpose.CONFIRM_EMAIL, token=token, now=now)
    # The account's lock before the link's row, in the order a new request takes them.
    ledger.lock_balance(session, account_id=row.account_id)
    links.use(session, row=row, now=now)
    return accounts.update_account(
        session, account_id=row.account_id, now=now, contact_email=row.email
    )
