"""Queue an email in the current transaction; the worker renders and delivers it later."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.db import delete_batch, queue_work
from chatmeter.notifications.models import OutboxMessage, OutboxStatus


def enqueue(
    session: Session,
    *,
    kind: str,
    dedupe_key: str,
    to: str,
    context: dict[str, Any],
    now: dt.datetime,
    account_id: int | None = None,
) -> OutboxMessage | None:
    """Write one email to the outbox; a second call with the same key writes nothing.

    Callers hold the account's lock, so the check-then-insert cannot race; the
    unique index on ``dedupe_key`` is the backstop.
    """
    exists = session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key))
    if exists is not None:
        return None
    message = OutboxMessage(
        account_id=account_id,
        kind=kind,
        dedupe_key=dedupe_key,
        to_address=to,
        context=json.dumps(context, sort_keys=True, default=str),
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(message)
    queue_work(session)
    return message


def prune(session: Session, *, before: dt.datetime, limit: int) -> int:
    """Forget at most ``limit`` emails sent or given up on, written before ``before``.

    Pending ones stay, however old. Every cause's key (a notice's number, an invoice,
    a month) comes round once, long before it could be forgotten, so no email is
    sent twice for being forgotten.
    """
    return delete_batch(
        session,
        OutboxMessage,
        OutboxMessage.status.in_([OutboxStatus.SENT, OutboxStatus.DEAD]),
        OutboxMessage.created_at < before,
        limit=limit,
    )
