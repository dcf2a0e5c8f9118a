"""The people who sign in to the control panel, each belonging to one account, and the
single-use links the panel sends them by email."""

from __future__ import annotations

import datetime as dt
import secrets
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class Role(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


def new_session_secret() -> str:
    """256 random bits for a user's session cookies."""
    return secrets.token_urlsafe(32)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.OWNER)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Signed into every session cookie of this user (``panel.auth``): a cookie opens only
    # the very user it was issued to, never a later user with the same id. Signing out,
    # resetting or changing the password draws a new one, which ends every older session.
    session_secret: Mapped[str] = mapped_column(String(64), default=new_session_secret)


class TokenPurpose(StrEnum):
    RESET = "reset"  # set a new password
    CONFIRM_EMAIL = "confirm_email"  # make ``email`` the account's contact email
    INVITE = "invite"  # join the account as ``role``
    VERIFY_EMAIL = "verify_email"  # prove the owner reads ``email``: the account is verified


class PanelToken(Base):
    """A single-use link sent by email; only the SHA-256 of its token is kept.

    ``used_at`` is set when the link is used or withdrawn (a newer link, a
    revoked invitation, a changed password); either way it no longer works.
    """

    __tablename__ = "panel_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # The user whose password a reset link sets; None for the other purposes.
    user_id: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("users.id"), index=True, default=None
    )
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str | None] = mapped_column(String(16), default=None)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
