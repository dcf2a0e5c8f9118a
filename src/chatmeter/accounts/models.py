"""Accounts (the customer businesses), their API keys, the people who sign in to them, and
the single-use links emailed to those people."""

from __future__ import annotations

import datetime as dt
import secrets
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # When someone proved they read the account's email (the sign-up link, a password
    # reset by its owner, a confirmed contact email); None until then. An unverified
    # account may not invite anyone and gets no free tokens (``accounts.verification``).
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # When the owner closed the welcome checklist; None while it shows.
    onboarding_dismissed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Surge alerts (``chat.surges``): an assistant is surging when its tokens today exceed
    # this multiple of its typical day, in tenths (30 = 3×) so that 1.5× stays exact, and
    # are at least ``surge_min_tokens``, so that a quiet account is not alerted over a few
    # hundred tokens.
    surge_multiple_tenths: Mapped[int] = mapped_column(default=30, server_default="30")
    surge_min_tokens: Mapped[int] = mapped_column(default=2000, server_default="2000")


class Scope(StrEnum):
    """What an API key may do. Each scope includes the ones listed before it."""

    READ = "read"  # GET requests only: balance, ledger, assistants, usage, keys
    ALL = "all"  # everything the account's owner can do through the API


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100), default="default")
    # Keys made before scopes existed could do everything: they keep doing so.
    scope: Mapped[str] = mapped_column(String(16), server_default=Scope.ALL.value)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Written at most once a minute per key (``accounts.keys.LAST_USED_EVERY``).
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)


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


class LinkPurpose(StrEnum):
    RESET = "reset"  # set a new password
    CONFIRM_EMAIL = "confirm_email"  # make ``email`` the account's contact email
    INVITE = "invite"  # join the account as ``role``
    VERIFY_EMAIL = "verify_email"  # prove the owner reads ``email``: the account is verified


class EmailLink(Base):
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
