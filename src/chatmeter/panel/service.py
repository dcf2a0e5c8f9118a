"""Sign-up and sign-in: the panel's users, their argon2 password hashes and their roles."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts import service as accounts
from chatmeter.billing import service as billing
from chatmeter.config import Settings
from chatmeter.errors import Conflict, InvalidInput, Unauthorized
from chatmeter.panel.models import Role, User

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
) -> User:
    """A new account, its subscription and its owner, all at once."""
    email = accounts.normalise_email(email)
    password = check_password(password)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists; sign in instead", field="email")
    account = accounts.create_account(
        session, email=email, timezone=timezone or "UTC", name=name, now=now
    )
    billing.open_subscription(session, account_id=account.id, settings=settings, now=now)
    user = User(
        account_id=account.id,
        email=email,
        password_hash=_hasher.hash(password),
        role=Role.OWNER,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, *, email: object, password: object) -> User:
    """The user with this email and password, or ``Unauthorized``."""
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise InvalidInput("enter your email and password")
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        try:
            user = session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
        except InvalidInput:
            user = None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError) as exc:
        raise Unauthorized(WRONG_CREDENTIALS) from exc
    if user is None:
        raise Unauthorized(WRONG_CREDENTIALS)
    return user


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)
