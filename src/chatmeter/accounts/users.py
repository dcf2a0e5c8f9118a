"""The people who sign in: passwords (argon2 hashes), sign-in, and resetting a forgotten
password by an emailed link.

Changing or resetting a password ends the user's sessions (``end_sessions``):
the caller signs the browser in again with the user's new session secret. A user
opened by the operator has no password yet (``NO_PASSWORD``): the owner chooses
one through a set-password link (``password_link``), which is a reset link.
"""

from __future__ import annotations

import datetime as dt

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts import links, verification
from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account, EmailLink, LinkPurpose, User, new_session_secret
from chatmeter.config import Settings
from chatmeter.errors import InvalidInput, Unauthorized
from chatmeter.notifications.outbox import enqueue

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
WRONG_CREDENTIALS = "The email or password is not right. Check both and try again."

_hasher = PasswordHasher()
# Verified when the email is unknown, so that a wrong email takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password anyone has")
# The hash of a user who has no password yet: no password verifies against it.
NO_PASSWORD = "!"
# The panel's page that takes a reset link, as the reset email spells it too.
RESET_PAGE = "/panel/password/reset"


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
    row, token = password_link(session, user=user, now=now)
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


def password_link(session: Session, *, user: User, now: dt.datetime) -> tuple[EmailLink, str]:
    """A new reset link for ``user`` (its row and its token): it sets the password once,
    until it expires. The reset email carries one; the operator hands one to the owner
    of an account they opened (``accounts.opening``)."""
    return links.issue(
        session,
        purpose=LinkPurpose.RESET,
        account_id=user.account_id,
        email=user.email,
        user_id=user.id,
        now=now,
    )


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
    links.use(session, row=row, now=now)
    user.password_hash = password_hash
    links.withdraw(session, purpose=LinkPurpose.RESET, user_id=user.id, now=now)
    end_sessions(session, user=user)
    verification.proven_by_reset(session, settings=settings, user=user, now=now)
    return user


def _reset_link(session: Session, *, token: object, now: dt.datetime) -> tuple[EmailLink, User]:
    row = links.find(session, purpose=LinkPurpose.RESET, token=token, now=now)
    user = session.get(User, row.user_id) if row.user_id is not None else None
    if user is None:
        raise links.SpentLink(links.SPENT[LinkPurpose.RESET])
    return row, user


def _set_password(session: Session, *, user: User, password: object, now: dt.datetime) -> None:
    user.password_hash = hash_password(password)
    # A reset link asked for before the change must not undo it.
    links.withdraw(session, purpose=LinkPurpose.RESET, user_id=user.id, now=now)
    end_sessions(session, user=user)


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)
