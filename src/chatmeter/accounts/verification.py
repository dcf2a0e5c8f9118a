"""Email verification: the owner proves, once, that the sign-up address is theirs.

The panel's sign-up sends a link to the address; opening it (and pressing the
button, so that a mail scanner following links verifies nothing) marks the
account verified. Resetting the password through the emailed link proves the
same and verifies it too, which is also how the address's real owner takes
over an account someone else signed up with their address.

Until then the account may sign in, build, train and test assistants, buy
tokens and make API keys. It may not invite anyone or change the contact email
(both send email to other addresses in its name), and it gets no free tokens
(``CHATMETER_FREE_TOKENS``): the current month's arrive when it is verified, and
renewals grant them from then on (``subscriptions.free_allowance``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from chatmeter.accounts import links
from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account, EmailLink, LinkPurpose, Role, User
from chatmeter.billing import subscriptions
from chatmeter.config import Settings
from chatmeter.errors import Conflict
from chatmeter.ledger import service as ledger
from chatmeter.notifications.outbox import enqueue

ALREADY = "your email address is already confirmed"


def send_link(session: Session, *, settings: Settings, user: User, now: dt.datetime) -> EmailLink:
    """Email ``user`` a link that verifies their account; a newer link replaces the older."""
    ledger.lock_balance(session, account_id=user.account_id)
    account = accounts.get_account(session, account_id=user.account_id)
    if account.email_verified_at is not None:
        raise Conflict(ALREADY)
    links.withdraw(session, purpose=LinkPurpose.VERIFY_EMAIL, account_id=account.id, now=now)
    row, token = links.issue(
        session,
        purpose=LinkPurpose.VERIFY_EMAIL,
        account_id=account.id,
        email=user.email,
        user_id=user.id,
        now=now,
    )
    enqueue(
        session,
        kind="verify_email",
        dedupe_key=f"verify_email:{row.id}",
        to=user.email,
        context={
            "account_name": account.name,
            "email": user.email,
            "free_tokens": settings.free_tokens,
            "token": token,
            "expires_at": row.expires_at.isoformat(),
        },
        now=now,
        account_id=account.id,
    )
    return row


def link(session: Session, *, token: object, now: dt.datetime) -> tuple[EmailLink, Account]:
    """What a verification link would verify, or ``UnknownLink`` / ``SpentLink``."""
    row = links.find(session, purpose=LinkPurpose.VERIFY_EMAIL, token=token, now=now)
    return row, accounts.get_account(session, account_id=row.account_id)


def verify(session: Session, *, settings: Settings, token: object, now: dt.datetime) -> Account:
    """Use a verification link: its account is verified and gets this month's free tokens."""
    row = links.find(session, purpose=LinkPurpose.VERIFY_EMAIL, token=token, now=now)
    # The account's lock before the link's row, in the order ``send_link`` takes them.
    ledger.lock_balance(session, account_id=row.account_id)
    links.use(session, row=row, now=now)
    user = session.get(User, row.user_id) if row.user_id is not None else None
    if user is None or user.email != row.email or user.account_id != row.account_id:
        raise links.SpentLink(links.SPENT[LinkPurpose.VERIFY_EMAIL])
    return mark_verified(session, settings=settings, account_id=row.account_id, now=now)


def proven_by_reset(session: Session, *, settings: Settings, user: User, now: dt.datetime) -> None:
    """A password reset by email proves an owner reads their address: verify the account."""
    if user.role == Role.OWNER:
        mark_verified(session, settings=settings, account_id=user.account_id, now=now)


def mark_verified(
    session: Session, *, settings: Settings, account_id: int, now: dt.datetime
) -> Account:
    """Verify the account (once): its pending links stop working, its free tokens arrive."""
    ledger.lock_balance(session, account_id=account_id)
    account = accounts.get_account(session, account_id=account_id)
    if account.email_verified_at is not None:
        return account
    account.email_verified_at = now
    links.withdraw(session, purpose=LinkPurpose.VERIFY_EMAIL, account_id=account_id, now=now)
    subscriptions.grant_free_allowance(session, account_id=account_id, settings=settings, now=now)
    return account
