"""Opening an account: the account, its subscription and its owner, in one unit of work.

One workflow, two doors:

- ``sign_up``: a customer on the panel's sign-up page, with the password they chose.
  Their email is not yet known to be theirs, so a verification link goes to it
  (``accounts.verification``) and the account gets no free tokens until it is opened.
- ``open_account``: the operator opens an account for someone (``chatmeter accounts
  create``, the demo). It is verified. The owner gets the password the operator gives
  (the demo's) or none at all: then ``users.password_link`` makes the one-time link
  with which the owner chooses one, the same link a forgotten password gets by email.

A person signs in with one email to one account: an email that already signs in is
refused, whichever door it comes through.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts import service as accounts
from chatmeter.accounts import users, verification
from chatmeter.accounts.models import Role, User
from chatmeter.billing import subscriptions
from chatmeter.config import Settings
from chatmeter.errors import Conflict

TAKEN = "an account with this email already exists; sign in instead"


def open_account(
    session: Session,
    *,
    settings: Settings,
    email: str,
    now: dt.datetime,
    password: str | None = None,
    timezone: str = "UTC",
    name: str = "",
    verified: bool = True,
) -> User:
    """A new account with its balance and subscription, and its owner; returns the owner.

    ``password``: the owner's, checked against the password rules; None leaves the owner
    without one until a set-password link is used.
    """
    email = accounts.normalise_email(email)
    if password is not None:
        users.check_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(TAKEN, field="email")
    account = accounts.create_account(
        session, email=email, timezone=timezone or "UTC", name=name, now=now, verified=verified
    )
    subscriptions.open_subscription(session, account_id=account.id, settings=settings, now=now)
    owner = User(
        account_id=account.id,
        email=email,
        password_hash=users.NO_PASSWORD if password is None else users.hash_password(password),
        role=Role.OWNER,
        created_at=now,
    )
    session.add(owner)
    session.flush()
    return owner


def sign_up(
    session: Session,
    *,
    settings: Settings,
    email: str,
    password: str,
    now: dt.datetime,
    timezone: str = "UTC",
    name: str = "",
) -> User:
    """A customer opens their own account; a link to verify their email goes out."""
    owner = open_account(
        session,
        settings=settings,
        email=email,
        password=password,
        timezone=timezone,
        name=name,
        now=now,
        verified=False,
    )
    verification.send_link(session, settings=settings, user=owner, now=now)
    return owner
