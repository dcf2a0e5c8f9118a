"""Accounts and their settings; API keys are ``accounts.keys``."""

from __future__ import annotations

import datetime as dt

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from chatmeter.accounts import keys, surge_settings
from chatmeter.accounts.models import Account, Scope
from chatmeter.config import check_timezone
from chatmeter.errors import Forbidden, InvalidInput, NotFound
from chatmeter.ledger import service as ledger
from chatmeter.notifications.outbox import enqueue

MAX_NAME_LENGTH = 200


def normalise_email(address: object) -> str:
    """A syntactically valid email address, or ``InvalidInput``."""
    if not isinstance(address, str) or not address.strip() or len(address) > 320:
        raise InvalidInput("enter a valid email address", field="email")
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"enter a valid email address: {exc}", field="email") from exc


def normalise_timezone(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidInput("time zone must be an IANA name such as Europe/Berlin", field="timezone")
    try:
        check_timezone(name)
    except ValueError as exc:
        raise InvalidInput(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin",
            field="timezone",
        ) from exc
    return name


def create_account(
    session: Session,
    *,
    email: str,
    now: dt.datetime,
    timezone: str = "UTC",
    name: str = "",
    verified: bool = True,
) -> Account:
    """A new account with an empty balance; its contact email is the sign-up email.

    ``verified``: whether the email is known to be the account holder's. The operator's
    accounts (CLI, demo) are; the panel's sign-up passes False until its link is opened.
    """
    email = normalise_email(email)
    timezone = normalise_timezone(timezone)
    name = (name or email.split("@", 1)[1]).strip()
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the name is longer than {MAX_NAME_LENGTH} characters", field="name")
    account = Account(
        name=name,
        contact_email=email,
        timezone=timezone,
        created_at=now,
        email_verified_at=now if verified else None,
    )
    session.add(account)
    session.flush()
    ledger.open_balance(session, account_id=account.id)
    return account


def require_verified(account: Account, *, to: str) -> None:
    """``Forbidden`` until the account's email is verified: what it does ``to`` would send
    email to other addresses in its name (or farm free tokens)."""
    if account.email_verified_at is None:
        raise Forbidden(
            f"confirm your email address first, to {to}: open the link we sent to "
            f"{account.contact_email} (the dashboard sends a new one)"
        )


def get_account(session: Session, *, account_id: int) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound("no such account", account_id=account_id)
    return account


def dismiss_onboarding(session: Session, *, account_id: int, now: dt.datetime) -> None:
    """Hide the welcome checklist for the account; once is enough, the first time stays."""
    account = get_account(session, account_id=account_id)
    if account.onboarding_dismissed_at is None:
        account.onboarding_dismissed_at = now


def update_account(
    session: Session,
    *,
    account_id: int,
    now: dt.datetime,
    contact_email: str | None = None,
    timezone: str | None = None,
    name: str | None = None,
    surge_multiple: object | None = None,
    surge_min_tokens: int | None = None,
) -> Account:
    """Change settings; a new contact email is announced to the old and the new address."""
    # Take the balance lock: a concurrent ledger change reads the contact email.
    ledger.lock_balance(session, account_id=account_id)
    account = get_account(session, account_id=account_id)
    if surge_multiple is not None:
        account.surge_multiple_tenths = surge_settings.parse_multiple(surge_multiple)
    if surge_min_tokens is not None:
        account.surge_min_tokens = surge_settings.check_min_tokens(surge_min_tokens)
    if timezone is not None:
        account.timezone = normalise_timezone(timezone)
    if name is not None:
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidInput(f"the name must be 1 to {MAX_NAME_LENGTH} characters", field="name")
        account.name = name
    if contact_email is not None:
        new = normalise_email(contact_email)
        old = account.contact_email
        if new != old:
            require_verified(account, to="change the contact email")
            account.contact_email = new
            stamp = now.isoformat()
            for recipient, address in (("old", old), ("new", new)):
                enqueue(
                    session,
                    kind="contact_email_changed",
                    dedupe_key=f"contact_email_changed:{account_id}:{stamp}:{recipient}",
                    to=address,
                    context={
                        "account_name": account.name,
                        "old_email": old,
                        "new_email": new,
                        "recipient": recipient,
                        "changed_at": stamp,
                    },
                    now=now,
                    account_id=account_id,
                )
    return account


def issue_api_key(
    session: Session,
    *,
    account_id: int,
    now: dt.datetime,
    name: str = "default",
    scope: Scope = Scope.ALL,
) -> str:
    """Create an API key and return it: only its hash is kept, so it is shown this once.

    The operator's shortcut (``accounts create``, the demo); ``accounts.keys`` has the rest.
    """
    return keys.issue(session, account_id=account_id, name=name, scope=scope, now=now)[1]


def authenticate(session: Session, *, token: str) -> int:
    """The account id an API key belongs to, or ``Unauthorized``."""
    return keys.authenticate(session, token=token).account_id
