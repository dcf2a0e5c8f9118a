"""Deliver the outbox: claim due messages by a lease, send them, record the outcome.

Any number of workers may run ``deliver_due`` at once. A message is claimed in
one short transaction that pushes ``next_attempt_at`` a lease ahead and counts
the attempt (PostgreSQL skips rows another worker has locked; on SQLite the
writing transaction is exclusive). It is sent outside any transaction, then
marked sent in a new one, but only if the row is still as claimed. A worker
that dies mid-batch loses nothing: once the lease runs out the messages are
due again.

Retries: 30 s after the first failure, doubling, at most an hour apart. After
``MAX_ATTEMPTS`` attempts a message is dead (kept for the operator, see
``requeue_dead``). A permanent refusal (a 5xx reply to the message) or an
email that cannot be rendered gets ``PERMANENT_MAX_ATTEMPTS`` attempts in all:
a few, in case a server misreported or a fixed template is deployed meanwhile.

When the mail server cannot be reached at all, the worker stops its batch and
gives the messages it did not try back uncounted, to wait as long as the one
that failed; an outage then costs attempts to one message, not to the queue.

The one case where an email goes out twice: a crash (or a database failure)
after the server accepted it and before it was marked sent, or a send slower
than the lease. The message is then sent again with the same ``Message-ID``,
derived from the outbox ``dedupe_key``, so a downstream server or client can
drop the copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatmeter.config import Settings
from chatmeter.db import Database, rowcount
from chatmeter.notifications.mailers import Mailer, MailerError
from chatmeter.notifications.models import OutboxMessage, OutboxStatus
from chatmeter.notifications.templates import render

log = logging.getLogger(__name__)
# The one field of a stored email that grants access (a single-use link's token).
SECRET = "token"

LEASE = dt.timedelta(minutes=5)
FIRST_RETRY = dt.timedelta(seconds=30)
MAX_RETRY = dt.timedelta(hours=1)
MAX_ATTEMPTS = 12
PERMANENT_MAX_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0  # will be retried
    dead: int = 0


@dataclass(frozen=True, slots=True)
class _Claim:
    id: int
    attempts: int  # the count written by our claim: proof that the row is still ours
    kind: str
    dedupe_key: str
    to_address: str
    context: str


def deliver_due(
    db: Database, *, mailer: Mailer, settings: Settings, now: dt.datetime, batch: int = 50
) -> DeliveryReport:
    """Send up to ``batch`` due messages; safe to run in several processes at once."""
    claims = _claim(db, now=now, batch=batch)
    started = time.monotonic()
    sent = failed = dead = 0
    for index, claim in enumerate(claims):
        if time.monotonic() - started > LEASE.total_seconds() / 2:
            # Another worker may take over these claims when the lease ends;
            # hand them back now rather than race it and send twice.
            _release(db, claims[index:], until=now)
            break
        error = _send(claim, mailer=mailer, settings=settings, now=now)
        if error is None:
            _mark_sent(db, claim, now=now)
            sent += 1
            continue
        retry_at = now + backoff(claim.attempts)
        if _mark_failed(db, claim, error=error, retry_at=retry_at):
            dead += 1
        else:
            failed += 1
        if isinstance(error, MailerError) and error.server_wide:
            _release(db, claims[index + 1 :], until=retry_at)
            break
    return DeliveryReport(sent=sent, failed=failed, dead=dead)


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failed attempt: 30 s, 1 min, 2 min ... at most 1 h."""
    doublings = min(max(attempts - 1, 0), 16)  # bounded: 2**16 * 30 s is far past the cap
    return min(FIRST_RETRY * (1 << doublings), MAX_RETRY)


def compose(
    *,
    kind: str,
    dedupe_key: str,
    to: str,
    context: dict[str, Any],
    settings: Settings,
    now: dt.datetime,
) -> EmailMessage:
    """The email for one outbox message: text with an HTML alternative."""
    rendered = render(kind, context, base_url=settings.base_url)
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = message_id(dedupe_key, mail_from=settings.mail_from)
    # Tells mail servers and autoresponders this is machine-sent (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def message_id(dedupe_key: str, *, mail_from: str) -> str:
    """The same outbox message always gets the same Message-ID."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]
    return f"<outbox.{digest}@{domain}>"


def requeue_dead(session: Session, *, now: dt.datetime, ids: Iterable[int] | None = None) -> int:
    """Give dead messages (all, or those in ``ids``) a fresh set of attempts; returns how many."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.DEAD)
        .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now)
    )
    if ids is not None:
        statement = statement.where(OutboxMessage.id.in_(list(ids)))
    return rowcount(session.execute(statement))


def _claim(db: Database, *, now: dt.datetime, batch: int) -> list[_Claim]:
    with db.uow() as uow:
        statement = (
            select(OutboxMessage)
            .where(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.next_attempt_at <= now,
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(batch)
        )
        if db.is_postgres:
            statement = statement.with_for_update(skip_locked=True)
        rows = uow.session.scalars(statement).all()
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + LEASE
        claims = [
            _Claim(r.id, r.attempts, r.kind, r.dedupe_key, r.to_address, r.context) for r in rows
        ]
        uow.commit()
    return claims


def _send(
    claim: _Claim, *, mailer: Mailer, settings: Settings, now: dt.datetime
) -> Exception | None:
    """Send one claimed message; the error, if it was not sent."""
    try:
        message = compose(
            kind=claim.kind,
            dedupe_key=claim.dedupe_key,
            to=claim.to_address,
            context=json.loads(claim.context),
            settings=settings,
            now=now,
        )
    except Exception as exc:  # a template or figure bug: no server would ever take it
        log.exception("outbox message %s (%s) cannot be composed", claim.id, claim.kind)
        return MailerError(f"cannot compose: {exc!r}", permanent=True)
    try:
        mailer.send(message)
    except MailerError as exc:
        log.warning("outbox message %s not sent: %s", claim.id, exc)
        return exc
    except Exception as exc:  # a mailer bug must not stop the rest of the batch
        log.exception("outbox message %s: unexpected mailer failure", claim.id)
        return exc
    return None


def _still_claimed(claim: _Claim) -> Any:
    return (
        (OutboxMessage.id == claim.id)
        & (OutboxMessage.attempts == claim.attempts)
        & (OutboxMessage.status == OutboxStatus.PENDING)
    )


def _mark_sent(db: Database, claim: _Claim, *, now: dt.datetime) -> None:
    with db.uow() as uow:
        result = uow.session.execute(
            update(OutboxMessage)
            .where(_still_claimed(claim))
            .values(status=OutboxStatus.SENT, sent_at=now, context=_without_secrets(claim.context))
        )
        uow.commit()
    if rowcount(result) == 0:
        log.warning("outbox message %s was sent after its lease ran out; it may go twice", claim.id)


def _without_secrets(context: str) -> str:
    """The stored figures minus a link's token: once sent, only the recipient holds it."""
    figures = json.loads(context)
    if SECRET in figures:
        figures[SECRET] = "(sent)"
    return json.dumps(figures, sort_keys=True, default=str)


def _mark_failed(db: Database, claim: _Claim, *, error: Exception, retry_at: dt.datetime) -> bool:
    """Record the failure and schedule the retry; True when the message is now dead."""
    permanent = isinstance(error, MailerError) and error.permanent
    dead = claim.attempts >= (PERMANENT_MAX_ATTEMPTS if permanent else MAX_ATTEMPTS)
    values: dict[str, Any] = {"last_error": f"attempt {claim.attempts}: {error}"[:1000]}
    if dead:
        values["status"] = OutboxStatus.DEAD
        log.error("outbox message %s is dead after %s attempts", claim.id, claim.attempts)
    else:
        values["next_attempt_at"] = retry_at
    with db.uow() as uow:
        uow.session.execute(update(OutboxMessage).where(_still_claimed(claim)).values(**values))
        uow.commit()
    return dead


def _release(db: Database, claims: Sequence[_Claim], *, until: dt.datetime) -> None:
    """Hand back claims that were not tried: the attempt does not count."""
    if not claims:
        return
    with db.uow() as uow:
        for claim in claims:
            uow.session.execute(
                update(OutboxMessage)
                .where(_still_claimed(claim))
                .values(attempts=claim.attempts - 1, next_attempt_at=until)
            )
        uow.commit()
