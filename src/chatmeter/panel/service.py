"""Sign-up, sign-in and passwords: the panel's users, their argon2 hashes and their roles.

Changing or resetting a password ends the user's sessions (``end_sessions``):
the caller signs the browser in again with the user's new session secret.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account
from chatmeter.billing import subscriptions
from chatmeter.config import Settings
from chatmeter.errors import Conflict, InvalidInput, Unauthorized
from chatmeter.ledger import service as ledger
from chatmeter.notifications.outbox import enqueue
from chatmeter.panel import tokens, verification
from chatmeter.panel.models import PanelToken, Role, TokenPurpose, User, new_session_secret

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
WRONG_CREDENTIALS = "The email or password is not right. Check both and try again."

_hasher = PasswordHasher()
# Verified when the email is unknown, so that a wrong email takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    account_id: int
    email: str
    role: str


def check_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidInput("enter a password", field="password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must be at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must be at most {MAX_PASSWORD_LENGTH} characters", field="password"
        )
    return password


def sign_up(
    session: Session,
    *,
    settings: Settings,
    email: str,
    password: str,
    now: dt.datetime,
    timezone: str = "UTC",
    name: str = "",
    verified: bool = False,
) -> User:
    """A new account, its subscription and its owner, all at once.

    Unless ``verified`` (the operator's demo), the email is not yet known to be the
    owner's: a verification link is sent to it (``panel.verification``).
    """
    email = accounts.normalise_email(email)
    password = check_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists; sign in instead", field="email")
    account = accounts.create_account(
        session, email=email, timezone=timezone or "UTC", name=name, now=now, verified=verified
    )
    subscriptions.open_subscription(session, account_id=account.id, settings=settings, now=now)
    user = User(
        account_id=account.id,
        email=email,
        password_hash=_hasher.hash(password),
        role=Role.OWNER,
        created_at=now,
    )
    session.add(user)
    session.flush()
    if not verified:
        verification.send_link(session, settings=settings, user=user, now=now)
    return user


def find_user(session: Session, *, email: object) -> User | None:
    """The user who signs in with ``email``, however its case or spelling was typed."""
    if not isinstance(email, str) or not email.strip():
        return None
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        try:
            user = session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
        except InvalidInput:
            user = None
    return user


def authenticate(session: Session, *, email: object, password: object) -> User:
    """The user with this email and password, or ``Unauthorized``."""
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise InvalidInput("enter your email and password")
    user = find_user(session, email=email)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError) as exc:
        raise Unauthorized(WRONG_CREDENTIALS) from exc
    if user is None:
        raise Unauthorized(WRONG_CREDENTIALS)
    return user


def hash_password(password: object) -> str:
    """The argon2 hash of a password that follows the sign-up rules, or ``InvalidInput``."""
    return _hasher.hash(check_password(password))


def end_sessions(session: Session, *, user: User) -> None:
    """End every session of ``user``: their cookies are signed with the old secret."""
    user.session_secret = new_session_secret()


def change_password(
    session: Session,
    *,
    user_id: int,
    current: object,
    new: object,
    now: dt.datetime,
) -> User:
    """Set a new password after checking the current one; other sessions end."""
    user = session.get(User, user_id)
    if user is None:
        raise Unauthorized("your session has ended; sign in again")
    if not isinstance(current, str) or not current:
        raise InvalidInput("enter your current password", field="current_password")
    try:
        _hasher.verify(user.password_hash, current)
    except (VerificationError, InvalidHashError) as exc:
        raise InvalidInput("the current password is not right", field="current_password") from exc
    _set_password(session, user=user, password=new, now=now)
    return user


# --- password reset by email ---------------------------------------------------


def request_password_reset(session: Session, *, email: object, now: dt.datetime) -> bool:
    """Email a reset link if a user signs in with ``email``; False (and nothing) otherwise.

    The caller answers the same either way, so the form tells no one who has a sign-in.
    """
    user = find_user(session, email=email)
    if user is None:
        return False
    account = session.get(Account, user.account_id)
    if account is None:
        return False
    row, token = tokens.issue(
        session,
        purpose=TokenPurpose.RESET,
        account_id=user.account_id,
        email=user.email,
        user_id=user.id,
        now=now,
    )
    enqueue(
        session,
        kind="password_reset",
        dedupe_key=f"password_reset:{row.id}",
        to=user.email,
        context={
            "account_name": account.name,
            "email": user.email,
            "token": token,
            "expires_at": row.expires_at.isoformat(),
        },
        now=now,
        account_id=user.account_id,
    )
    return True


def reset_user(session: Session, *, token: object, now: dt.datetime) -> User:
    """The user a reset link is for, or ``UnknownLink`` / ``SpentLink``."""
    return _reset_link(session, token=token, now=now)[1]


def reset_password(
    session: Session,
    *,
    settings: Settings,
    token: object,
    password: object,
    now: dt.datetime,
) -> User:
    """Set the password a reset link is for; the user's other links and sessions end.

    The link came by email: an owner who used it has proven the address, which
    verifies an account not verified yet.
    """
    row, user = _reset_link(session, token=token, now=now)
    password_hash = hash_password(password)  # a refused password leaves the link usable
    tokens.use(session, row=row, now=now)
    user.password_hash = password_hash
    tokens.withdraw(session, purpose=TokenPurpose.RESET, user_id=user.id, now=now)
    end_sessions(session, user=user)
    verification.proven_by_reset(session, settings=settings, user=user, now=now)
    return user


def _reset_link(session: Session, *, token: object, now: dt.datetime) -> tuple[PanelToken, User]:
    row = tokens.find(session, purpose=TokenPurpose.RESET, token=token, now=now)
    user = session.get(User, row.user_id) if row.user_id is not None else None
    if user is None:
        raise tokens.SpentLink(tokens.SPENT[TokenPurpose.RESET])
    return row, user


def _set_password(session: Session, *, user: User, password: object, now: dt.datetime) -> None:
    user.password_hash = hash_password(password)
    # A reset link asked for before the change must not undo it.
    tokens.withdraw(session, purpose=TokenPurpose.RESET, user_id=user.id, now=now)
    end_sessions(session, user=user)


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)


# --- the contact email, confirmed by a link to the new address ------------------


def request_contact_email_change(
    session: Session, *, account_id: int, email: object, requested_by: str, now: dt.datetime
) -> PanelToken:
    """Send a confirmation link to the new address; nothing changes until it is opened.

    A newer request replaces an older one: only the latest link works.
    """
    address = accounts.normalise_email(email)
    ledger.lock_balance(session, account_id=account_id)
    account = accounts.get_account(session, account_id=account_id)
    accounts.require_verified(account, to="change the contact email")
    if address.lower() == account.contact_email.lower():
        raise InvalidInput("this is already your contact email", field="email")
    tokens.withdraw(session, purpose=TokenPurpose.CONFIRM_EMAIL, account_id=account_id, now=now)
    row, token = tokens.issue(
        session,
        purpose=TokenPurpose.CONFIRM_EMAIL,
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


def pending_contact_email(
    session: Session, *, account_id: int, now: dt.datetime
) -> PanelToken | None:
    """The change waiting for its confirmation link to be opened, if any."""
    waiting = tokens.pending(
        session, purpose=TokenPurpose.CONFIRM_EMAIL, account_id=account_id, now=now
    )
    return waiting[0] if waiting else None


def cancel_contact_email_change(session: Session, *, account_id: int, now: dt.datetime) -> int:
    """Withdraw the pending change; its link stops working. Returns how many were pending."""
    ledger.lock_balance(session, account_id=account_id)
    return tokens.withdraw(
        session, purpose=TokenPurpose.CONFIRM_EMAIL, account_id=account_id, now=now
    )


def contact_email_link(session: Session, *, token: object, now: dt.datetime) -> PanelToken:
    """The change a confirmation link would make, or ``UnknownLink`` / ``SpentLink``."""
    return tokens.find(session, purpose=TokenPurpose.CONFIRM_EMAIL, token=token, now=now)


def confirm_contact_email(session: Session, *, token: object, now: dt.datetime) -> Account:
    """Make the link's address the contact email; the old and new addresses are told.

    The change itself is ``accounts.update_account``, as the REST API makes it, so
    both send the same ``contact_email_changed`` emails.
    """
    row = tokens.find(session, purpose=TokenPurpose.CONFIRM_EMAIL, token=token, now=now)
    # The account's lock before the link's row, in the order a new request takes them.
    ledger.lock_balance(session, account_id=row.account_id)
    tokens.use(session, row=row, now=now)
    return accounts.update_account(
        session, account_id=row.account_id, now=now, contact_email=row.email
    )
