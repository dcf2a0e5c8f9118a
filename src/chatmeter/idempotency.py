"""Idempotency keys for operations that have no natural key of their own.

The same key with the same request returns the first result and writes
nothing; the same key with a different request is refused (409).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from chatmeter.db import Base, BigIntPK, UTCDateTime
from chatmeter.errors import IdempotencyConflict, InvalidInput

MAX_KEY_LENGTH = 200


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("account_id", "scope", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    scope: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


def request_hash(request: Any) -> str:
    """A stable fingerprint of a request's content."""
    encoded = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable characters")
    return key


def recall(
    session: Session, *, account_id: int, scope: str, key: str, request: Any
) -> dict[str, Any] | None:
    """The stored response for this key, None if the key is new.

    Call it while holding the account's lock, so that two requests with one
    key cannot both find it new.
    """
    record = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.account_id == account_id,
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.key == key,
        )
    )
    if record is None:
        return None
    if record.request_hash != request_hash(request):
        raise IdempotencyConflict(
            "this idempotency key was already used for a different request", key=key
        )
    return dict(json.loads(record.response))


def remember(
    session: Session,
    *,
    account_id: int,
    scope: str,
    key: str,
    request: Any,
    response: dict[str, Any],
    now: dt.datetime,
) -> None:
    session.add(
        IdempotencyRecord(
            account_id=account_id,
            scope=scope,
            key=key,
            request_hash=request_hash(request),
            response=json.dumps(response, default=str),
            created_at=now,
        )
    )
