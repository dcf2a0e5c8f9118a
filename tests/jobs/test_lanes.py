"""Money jobs never wait behind training (issue #8, item 5).

Measured before: a low-balance email took more than 8 s while the demo
assistant was training, because the worker ran its jobs one after another.
Here a real, long training (thousands of passages to embed) keeps the worker's
training job busy while a chat turn's hold runs out and a spend queues the
low-balance email: the hold is released and the email sent while that very
training is still running. Everything is observed as it happens (the worker's
job events, the training job's log), nothing is slept on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing import purchases
from chatmeter.context import Context
from chatmeter.jobs.worker import JobEvent, Worker
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Hold
from chatmeter.notifications.models import OutboxMessage
from chatmeter.training import sandbox
from chatmeter.training.models import TrainingFile
from tests.support.accounts import new_account, spend
from tests.training.test_job import long_text, queue

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder

WAIT = 120.0  # seconds; what is awaited happens in well under one


class Watcher(logging.Handler):
    """Everything the worker tells, and the training job's "file N started" log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[JobEvent] = []
        self.training_started: list[int] = []
        self.changed = threading.Condition()

    def on_job(self, event: JobEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "training file %s (%s) started":
            with self.changed:
                self.training_started.append(int(record.args[0]))  # type: ignore[index]
                self.changed.notify_all()

    def wait_for(self, what: str, predicate) -> None:  # type: ignore[no-untyped-def]
        with self.changed:
            assert self.changed.wait_for(predicate, timeout=WAIT), f"never saw {what}"

    def finished(self, name: str, since: int = 0) -> list[dict[str, object]]:
        return [
            e.result or {} for e in self.events[since:] if e.name == name and e.phase == "finished"
        ]


def low_balance_emails(ctx: Context) -> list[str]:
    with ctx.db.read() as session:
        return list(
            session.scalars(select(OutboxMessage.status).where(OutboxMessage.kind == "low_balance"))
        )


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    watcher = Watcher()
    logger = logging.getLogger("chatmeter.training")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(watcher)
    yield watcher
    logger.removeHandler(watcher)
    logger.setLevel(level)


def test_hold_expiry_and_emails_run_on_time_while_a_long_training_runs(
    ctx: Context, watcher: Watcher
) -> None:
    account = new_account(ctx)
    purchases.purchase(ctx, account_id=account, packages=1)  # 5,000 tokens
    with ctx.db.uow() as uow:
        assistant = assistants.create_assistant(
            uow.session,
            account_id=account,
            fields=AssistantFields(name="Helper"),
            now=ctx.clock.now(),
        )
        hold = ledger.reserve(
            uow.session,
            account_id=account,
            tokens=100,
            key="turn",
            ttl_seconds=60,
            now=ctx.clock.now(),
        )
        uow.commit()
        assistant_id, hold_id = assistant.id, hold.id
    file_id = queue(ctx, assistant_id, "orders.txt", long_text(3000))  # minutes of embedding
    sandbox.shared(ctx.settings).start()  # model loaded: the file is read and embedded at once

    worker = Worker(ctx, on_job=watcher.on_job)
    threads = worker.start()
    try:
        watcher.wait_for("the training start", lambda: file_id in watcher.training_started)
        since = len(watcher.events)
        spend(ctx, account, 4200, key="chat")  # 800 of 5,000 left: the low-balance email
        ctx.clock.advance(minutes=5)  # the hold's time is up; every lease is due
        worker.wake()
        watcher.wait_for(
            "the hold released and the email sent",
            lambda: (
                any(r.get("released") for r in watcher.finished("hold-expiry", since))
                and any(r.get("sent") for r in watcher.finished("outbox", since))
                and low_balance_emails(ctx) == ["sent"]
            ),
        )
        assert watcher.finished("training") == []  # ...while the training is still at it
        with ctx.db.read() as session:
            assert session.get(Hold, hold_id).status == "expired"  # type: ignore[union-attr]
            assert session.get(TrainingFile, file_id).status == "processing"  # type: ignore[union-attr]
        assert low_balance_emails(ctx) == ["sent"]
    finally:
        worker.stop()  # the training in progress ends, its file back in the queue
        for thread in threads:
            thread.join(timeout=WAIT)
    assert not any(thread.is_alive() for thread in threads)
    with ctx.db.read() as session:
        assert session.get(TrainingFile, file_id).status == "queued"  # type: ignore[union-attr]
