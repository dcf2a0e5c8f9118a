"""Accounts (the customer businesses) and their API keys."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, UTCDateTime


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
