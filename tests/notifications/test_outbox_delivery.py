"""The outbox worker against a real SMTP server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from chatmeter.clock import FixedClock
from chatmeter.config import Settings
from chatmeter.db import Database
from chatmeter.notifications import delivery
from chatmeter.notifications.delivery import (
    MAX_ATTEMPTS,
    PERMANENT_MAX_ATTEMPTS,
    DeliveryReport,
    backoff,
    deliver_due,
    message_id,
    requeue_dead,
)
from chatmeter.notifications.mailers import FileMailer, MemoryMailer, SmtpMailer
from chatmeter.notifications.models import OutboxMessage, OutboxStatus
from chatmeter.notifications.outbox import enqueue

from .smtp_server import SmtpServer

FIGURES = {
    "account_name": "Acme Bakery",
    "balance": 812,
    "available": 812,
    "limit": 5000,
    "period": "2026-11",
    "renews_at": "2026-12-01T00:00:00+00:00",
    "renews_on": "2026-12-01",
    "timezone": "UTC",
    "percent_left": 16,
    "threshold_percent": 20,
}


def queue(db: Database, clock: FixedClock, count: int, **overrides: Any) -> list[str]:
    """Enqueue ``count`` low-balance emails; returns their dedupe keys."""
    keys = [f"low_balance:test:{number}" for number in range(count)]
    with db.uow() as uow:
        for number, key in enumerate(keys):
            enqueue(
                uow.session,
                kind=overrides.get("kind", "low_balance"),
                dedupe_key=key,
                to=f"owner{number}@acme.example",
                context=overrides.get("context", {**FIGURES, "balance": 800 + number}),
                now=clock.now(),
            )
        uow.commit()
    return keys


def rows(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def smtp(server: SmtpServer) -> SmtpMailer:
    return SmtpMailer(server.host, server.port, timeout=5)


def deliver(
    db: Database, mailer: Any, settings: Settings, clock: FixedClock, **kw: Any
) -> DeliveryReport:
    return deliver_due(db, mailer=mailer, settings=settings, now=clock.now(), **kw)


def test_each_message_arrives_once_with_both_parts(
    db: Database, clock: FixedClock, settings: Settings, smtp_server: SmtpServer
) -> None:
    keys = queue(db, clock, 3)

    report = deliver(db, smtp(smtp_server), settings, clock)

    assert report == DeliveryReport(sent=3, failed=0, dead=0)
    received = smtp_server.inbox.messages
    assert sorted(m["To"] for m in received) == [f"owner{n}@acme.example" for n in range(3)]
    # Stripped: a long Message-ID is folded onto its own line, which is legal.
    assert {m["Message-ID"].strip() for m in received} == {
        message_id(key, mail_from=settings.mail_from) for key in keys
    }
    for message in received:
        assert message["From"] == settings.mail_from
        assert message["Subject"].startswith("Your token balance is low")
        assert message["Date"] is not None
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        assert text is not None and html is not None
        assert "of 5,000 tokens left" in text.get_content()
        assert "5,000" in html.get_content()
        assert f"{settings.base_url}/panel/billing?buy=1" in text.get_content()
    assert all(r.status == OutboxStatus.SENT and r.sent_at == clock.now() for r in rows(db))
    assert all(r.attempts == 1 for r in rows(db))

    clock.advance(hours=2)
    assert deliver(db, smtp(smtp_server), settings, clock) == DeliveryReport()
    assert len(smtp_server.inbox.messages) == 3


def test_a_down_server_delays_the_message_until_it_is_back(
    db: Database, clock: FixedClock, settings: Settings, stopped_smtp_server: SmtpServer
) -> None:
    server = stopped_smtp_server
    queue(db, clock, 1)

    assert deliver(db, smtp(server), settings, clock) == DeliveryReport(failed=1)
    [row] = rows(db)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 1
    assert row.next_attempt_at == clock.now() + backoff(1) > clock.now()
    assert row.last_error and "Connection refused" in row.last_error

    server.start()
    # Not due yet: the retry waits for its backoff even though the server is back.
    assert deliver(db, smtp(server), settings, clock) == DeliveryReport()
    clock.advance(seconds=backoff(1).total_seconds() + 1)
    assert deliver(db, smtp(server), settings, clock) == DeliveryReport(sent=1)
    assert deliver(db, smtp(server), settings, clock) == DeliveryReport()
    assert len(server.inbox.messages) == 1
    [row] = rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 2)


def test_a_down_server_costs_one_attempt_not_one_per_message(
    db: Database, clock: FixedClock, settings: Settings, stopped_smtp_server: SmtpServer
) -> None:
    server = stopped_smtp_server
    queue(db, clock, 4)

    assert deliver(db, smtp(server), settings, clock) == DeliveryReport(failed=1)
    retry_at = clock.now() + backoff(1)
    assert [(r.attempts, r.next_attempt_at) for r in rows(db)] == [
        (1, retry_at),
        (0, retry_at),
        (0, retry_at),
        (0, retry_at),
    ]

    server.start()
    clock.advance(seconds=31)
    assert deliver(db, smtp(server), settings, clock) == DeliveryReport(sent=4)
    assert len(server.inbox.messages) == 4


def test_concurrent_workers_send_each_message_once(
    db: Database, clock: FixedClock, settings: Settings, smtp_server: SmtpServer
) -> None:
    queue(db, clock, 30)
    smtp_server.inbox.delay = 0.01  # lets the two workers interleave
    workers = 4
    start = threading.Barrier(workers)

    def worker() -> int:
        # A Database of its own, as a separate worker process would have.
        own = Database(db.url)
        try:
            start.wait()
            sent = 0
            while True:
                report = deliver(own, smtp(smtp_server), settings, clock, batch=3)
                assert report.failed == report.dead == 0
                if report == DeliveryReport():
                    return sent
                sent += report.sent
        finally:
            own.dispose()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = [f.result() for f in [pool.submit(worker) for _ in range(workers)]]

    assert sum(results) == 30
    assert min(results) > 0  # every worker took part: the claims really interleaved
    received = smtp_server.inbox.messages
    assert len(received) == 30
    assert len({m["Message-ID"] for m in received}) == 30
    assert all(r.status == OutboxStatus.SENT and r.attempts == 1 for r in rows(db))


def test_a_refused_recipient_goes_dead_after_a_few_attempts(
    db: Database, clock: FixedClock, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.inbox.refuse_rcpt = "550 5.1.1 No such user"
    queue(db, clock, 1)

    for attempt in range(1, PERMANENT_MAX_ATTEMPTS):
        assert deliver(db, smtp(smtp_server), settings, clock) == DeliveryReport(failed=1)
        [row] = rows(db)
        assert (row.status, row.attempts) == (OutboxStatus.PENDING, attempt)
        assert row.next_attempt_at == clock.now() + backoff(attempt)
        clock.advance(hours=1)

    assert deliver(db, smtp(smtp_server), settings, clock) == DeliveryReport(dead=1)
    [row] = rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.DEAD, PERMANENT_MAX_ATTEMPTS)
    assert row.last_error and "550" in row.last_error and "No such user" in row.last_error
    clock.advance(days=1)
    assert deliver(db, smtp(smtp_server), settings, clock) == DeliveryReport()
    assert smtp_server.inbox.messages == []


def test_temporary_refusals_go_dead_after_max_attempts(
    db: Database, clock: FixedClock, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.inbox.refuse_data = "451 4.3.0 Try again later"
    queue(db, clock, 1)

    waits = []
    for _ in range(MAX_ATTEMPTS - 1):
        assert deliver(db, smtp(smtp_server), settings, clock) == DeliveryReport(failed=1)
        [row] = rows(db)
        waits.append(row.next_attempt_at - clock.now())
        clock.set(row.next_attempt_at)
    assert deliver(db, smtp(smtp_server), settings, clock) == DeliveryReport(dead=1)
    assert rows(db)[0].attempts == MAX_ATTEMPTS

    # 30 s doubling, capped at an hour.
    assert waits[:4] == [dt.timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert max(waits) == dt.timedelta(hours=1)


def test_dead_messages_can_be_requeued(
    db: Database, clock: FixedClock, settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.inbox.refuse_rcpt = "550 5.1.1 No such user"
    queue(db, clock, 1)
    for _ in range(PERMANENT_MAX_ATTEMPTS):
        deliver(db, smtp(smtp_server), settings, clock)
        clock.advance(hours=1)
    assert rows(db)[0].status == OutboxStatus.DEAD

    smtp_server.inbox.refuse_rcpt = None
    with db.uow() as uow:
        assert requeue_dead(uow.session, now=clock.now()) == 1
        uow.commit()
    assert deliver(db, smtp(smtp_server), settings, clock) == DeliveryReport(sent=1)
    assert len(smtp_server.inbox.messages) == 1


def test_an_email_that_cannot_be_rendered_is_treated_as_permanent(
    db: Database, clock: FixedClock, settings: Settings
) -> None:
    queue(db, clock, 1, context={"account_name": "Acme Bakery"})  # figures missing
    mailer = MemoryMailer()
    for _ in range(PERMANENT_MAX_ATTEMPTS - 1):
        assert deliver(db, mailer, settings, clock) == DeliveryReport(failed=1)
        clock.advance(hours=1)
    assert deliver(db, mailer, settings, clock) == DeliveryReport(dead=1)
    [row] = rows(db)
    assert row.last_error and "cannot compose" in row.last_error and "balance" in row.last_error
    assert mailer.messages == []


def test_a_message_reclaimed_by_another_worker_is_left_to_it(
    db: Database, clock: FixedClock, settings: Settings
) -> None:
    queue(db, clock, 1)

    class SlowMailer(MemoryMailer):
        """Takes so long that the lease runs out and another worker claims the message."""

        def send(self, message: EmailMessage) -> None:
            super().send(message)
            with db.uow() as uow:
                uow.session.execute(
                    update(OutboxMessage).values(attempts=OutboxMessage.attempts + 1)
                )
                uow.commit()

    assert deliver(db, SlowMailer(), settings, clock) == DeliveryReport(sent=1)
    [row] = rows(db)
    # Not marked: the row belongs to the other worker's claim now.
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 2)


def test_a_batch_that_outlives_half_its_lease_gives_the_rest_back(
    db: Database, clock: FixedClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue(db, clock, 3)
    # A negative lease makes "half the lease is gone" true before the first send.
    monkeypatch.setattr(delivery, "LEASE", dt.timedelta(seconds=-1))
    mailer = MemoryMailer()

    assert deliver(db, mailer, settings, clock) == DeliveryReport()
    assert mailer.messages == []
    assert [(r.status, r.attempts, r.next_attempt_at) for r in rows(db)] == [
        (OutboxStatus.PENDING, 0, clock.now())
    ] * 3


def test_file_mailer_delivery(
    db: Database, clock: FixedClock, settings: Settings, tmp_path: Path
) -> None:
    queue(db, clock, 2)
    mail_dir = tmp_path / "mail"
    assert deliver(db, FileMailer(mail_dir), settings, clock) == DeliveryReport(sent=2)
    assert len(list(mail_dir.glob("*.eml"))) == 2


def test_message_id_is_stable_and_well_formed() -> None:
    first = message_id("low_balance:7:2026-11:1", mail_from="Chatmeter <no-reply@example.com>")
    assert first == message_id("low_balance:7:2026-11:1", mail_from="no-reply@example.com")
    assert first != message_id("low_balance:7:2026-11:2", mail_from="no-reply@example.com")
    assert first.startswith("<outbox.") and first.endswith("@example.com>")
