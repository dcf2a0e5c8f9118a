"""Single-use links sent by email: password reset, contact email confirmation, invitation,
email verification after sign-up.

A link carries a random token of 256 bits. The database keeps only its SHA-256
(``panel_tokens.token_hash``), so a stolen copy of the table opens nothing; a
plain hash is enough because the token is random, not chosen by a person. The
token itself exists once more, in the outbox row of the email that carries it,
until that email is sent (delivery then replaces it, ``notifications.delivery``).

A link works once, until it expires. Using it is a conditional update
(``used_at IS NULL``), so two clicks racing each other cannot both succeed.

    ChatmeterError
    ├── NotFound
    │   └── UnknownLink (404): no such token (mistyped, cut off or forged)
    └── SpentLink (410): used, withdrawn or expired
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from chatmeter.accounts.models import EmailLink, LinkPurpose
from chatmeter.db import delete_batch
from chatmeter.errors import ChatmeterError, NotFound

LIFETIMES = {
    LinkPurpose.RESET: dt.timedelta(hours=1),
    LinkPurpose.CONFIRM_EMAIL: dt.timedelta(hours=24),
    LinkPurpose.INVITE: dt.timedelta(days=7),
    LinkPurpose.VERIFY_EMAIL: dt.timedelta(days=3),
}
# What ``secrets.token_urlsafe(32)`` makes: 43 characters of the URL-safe alphabet.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")

SPENT = {
    LinkPurpose.RESET: "this password reset link was already used; ask for a new one",
    LinkPurpose.CONFIRM_EMAIL: "this confirmation link was already used, or a newer one "
    "replaced it",
    LinkPurpose.INVITE: "this invitation was already used or withdrawn; ask for a new one",
    LinkPurpose.VERIFY_EMAIL: "this verification link was already used, or a newer one replaced it",
}
EXPIRED = {
    LinkPurpose.RESET: "this password reset link has expired (it works for 1 hour); "
    "ask for a new one",
    LinkPurpose.CONFIRM_EMAIL: "this confirmation link has expired (it works for 24 hours); "
    "enter the new contact email again in your settings",
    LinkPurpose.INVITE: "this invitation has expired (it works for 7 days); "
    "ask the account's owner for a new one",
    LinkPurpose.VERIFY_EMAIL: "this verification link has expired (it works for 3 days); "
    "sign in and send yourself a new one from the dashboard",
}
UNKNOWN = "this link is not valid; check that you copied all of it from the email"


class UnknownLink(NotFound):
    code = "unknown_link"


class SpentLink(ChatmeterError):
    status_code = 410
    code = "spent_link"


# What a link that does not work raises: its page shows the message instead of a form.
LINK_ERRORS = (UnknownLink, SpentLink)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(
    session: Session,
    *,
    purpose: LinkPurpose,
    account_id: int,
    email: str,
    now: dt.datetime,
    user_id: int | None = None,
    role: str | None = None,
) -> tuple[EmailLink, str]:
    """A new link's row and its token; the token is for the email and is not kept."""
    token = secrets.token_urlsafe(32)
    row = EmailLink(
        purpose=purpose,
        token_hash=token_hash(token),
        account_id=account_id,
        user_id=user_id,
        email=email,
        role=role,
        expires_at=now + LIFETIMES[purpose],
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row, token


def find(session: Session, *, purpose: LinkPurpose, token: object, now: dt.datetime) -> EmailLink:
    """The usable link for ``token``, or ``UnknownLink`` / ``SpentLink`` with a readable message."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise UnknownLink(UNKNOWN)
    row = session.scalar(
        select(EmailLink).where(
            EmailLink.token_hash == token_hash(token), EmailLink.purpose == purpose
        )
    )
    if row is None:
        raise UnknownLink(UNKNOWN)
    if row.used_at is not None:
        raise SpentLink(SPENT[purpose])
    if now >= row.expires_at:
        raise SpentLink(EXPIRED[purpose])
    return row


def use(session: Session, *, row: EmailLink, now: dt.datetime) -> None:
    """Mark the link used; ``SpentLink`` if another request used it first."""
    result = cast(
        "CursorResult[Any]",
        session.execute(
            update(EmailLink)
            .where(EmailLink.id == row.id, EmailLink.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        raise SpentLink(SPENT[LinkPurpose(row.purpose)])
    row.used_at = now


def withdraw(
    session: Session,
    *,
    purpose: LinkPurpose,
    now: dt.datetime,
    account_id: int | None = None,
    user_id: int | None = None,
    email: str | None = None,
) -> int:
    """Make the matching unused links stop working; returns how many there were."""
    if account_id is None and user_id is None and email is None:
        raise ValueError("withdraw whose links? give an account, a user or an email")
    statement = update(EmailLink).where(EmailLink.purpose == purpose, EmailLink.used_at.is_(None))
    if account_id is not None:
        statement = statement.where(EmailLink.account_id == account_id)
    if user_id is not None:
        statement = statement.where(EmailLink.user_id == user_id)
    if email is not None:
        statement = statement.where(EmailLink.email == email)
    result = cast(
        "CursorResult[Any]",
        session.execute(statement.values(used_at=now).execution_options(synchronize_session=False)),
    )
    return int(result.rowcount)


def pending(
    session: Session, *, purpose: LinkPurpose, account_id: int, now: dt.datetime
) -> list[EmailLink]:
    """The account's links of ``purpose`` that still work, newest first."""
    return list(
        session.scalars(
            select(EmailLink)
            .where(
                EmailLink.purpose == purpose,
                EmailLink.account_id == account_id,
                EmailLink.used_at.is_(None),
                EmailLink.expires_at > now,
            )
            .order_by(EmailLink.created_at.desc(), EmailLink.id.desc())
        )
    )


def prune(session: Session, *, before: dt.datetime, limit: int) -> int:
    """Forget at most ``limit`` links used, withdrawn or expired before ``before``.

    A forgotten link's token is then unknown (404) instead of spent (410).
    """
    return delete_batch(
        session,
        EmailLink,
        or_(
            EmailLink.used_at < before,
            EmailLink.used_at.is_(None) & (EmailLink.expires_at < before),
        ),
        limit=limit,
    )
