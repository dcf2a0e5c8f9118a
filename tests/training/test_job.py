"""The training job: each file claimed once however many workers run, a crashed worker's
file picked up again when its lease runs out, progress that only moves forward, and the
in-process worker that trains what is uploaded."""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from chatmeter.jobs.worker import Worker
from chatmeter.training import service as training
from chatmeter.training.child import EMBED_BATCH
from chatmeter.training.models import Chunk, FilePart, TrainingFile
from chatmeter.web.app import create_app
from tests.assistants.callers import chunk_rows, index_version
from tests.support.accounts import new_account
from tests.support.api import caller
from tests.support.wait import wait_for


def queue(ctx: Context, assistant_id: int, filename: str, data: bytes) -> int:
    with ctx.db.uow() as uow:
        assistant = uow.session.get(Assistant, assistant_id)
        assert assistant is not None
        file_id = training.upload(
            uow.session,
            assistant=assistant,
            filename=filename,
            data=data,
            max_bytes=ctx.settings.max_upload_bytes,
            now=ctx.clock.now(),
        ).file.id
        uow.commit()
        return file_id


def file_row(ctx: Context, file_id: int) -> TrainingFile:
    with ctx.db.read() as session:
        file = session.get(TrainingFile, file_id)
        assert file is not None
        return file


def file_parts(ctx: Context, file_id: int) -> int:
    """How many parts of the upload are still stored."""
    with ctx.db.read() as session:
        return (
            session.scalar(
                select(func.count()).select_from(FilePart).where(FilePart.file_id == file_id)
            )
            or 0
        )


def note(number: int) -> bytes:
    return f"Note {number}: the shop's branch number {number} opens at {number} o'clock.".encode()


def long_text(paragraphs: int) -> bytes:
    """Distinct paragraphs of about 150 tokens: one chunk each."""
    sentence = "Paragraph {n} explains how order number {n} was packed, shipped and delivered. "
    return "\n\n".join(sentence.format(n=n) * 10 for n in range(paragraphs)).encode()


@pytest.mark.model
def test_two_concurrent_jobs_claim_each_file_once(ctx: Context, assistant_id: int) -> None:
    ids = [queue(ctx, assistant_id, f"note{n}.txt", note(n)) for n in range(6)]
    barrier = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(training.process_queue(ctx))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(r["ready"] for r in results) == 6 and sum(r["failed"] for r in results) == 0
    for file_id in ids:
        file = file_row(ctx, file_id)
        assert (file.status, file.attempts) == ("ready", 1)
        rows = chunk_rows(ctx, file_id=file_id)
        assert len(rows) == file.chunks == 1  # indexed once, not twice
    assert index_version(ctx, assistant_id) == 6


def test_of_racing_claims_on_one_file_exactly_one_wins(ctx: Context, assistant_id: int) -> None:
    file_id = queue(ctx, assistant_id, "note.txt", note(1))
    barrier = threading.Barrier(4)
    wins: list[bool] = []

    def claim() -> None:
        barrier.wait()
        wins.append(training.claim_file(ctx, file_id=file_id))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(wins) == [False, False, False, True]
    assert file_row(ctx, file_id).attempts == 1
    assert training.process_queue(ctx) == {"ready": 0, "failed": 0}  # leased: not due


@pytest.mark.model
def test_a_crashed_workers_file_is_picked_up_when_its_lease_runs_out(
    ctx: Context, assistant_id: int
) -> None:
    file_id = queue(ctx, assistant_id, "note.txt", note(1))
    assert training.claim_file(ctx, file_id=file_id)  # ...and the worker dies here
    crashed = file_row(ctx, file_id)
    assert crashed.status == "processing"
    assert crashed.leased_until is not None and crashed.leased_until > ctx.clock.now()

    assert training.process_queue(ctx) == {"ready": 0, "failed": 0}
    ctx.clock.set(crashed.leased_until)
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    done = file_row(ctx, file_id)
    assert (done.status, done.attempts, done.leased_until) == ("ready", 2, None)
    assert len(chunk_rows(ctx, file_id=file_id)) == done.chunks == 1


def test_a_file_that_crashes_every_worker_is_failed_explained_after_three_attempts(
    ctx: Context, assistant_id: int
) -> None:
    file_id = queue(ctx, assistant_id, "note.txt", note(1))
    for _ in range(training.MAX_ATTEMPTS):
        assert training.claim_file(ctx, file_id=file_id)
        ctx.clock.advance(seconds=training.processing_lease(ctx.settings).total_seconds())
    assert not training.claim_file(ctx, file_id=file_id)
    file = file_row(ctx, file_id)
    assert (file.status, file.error_code) == ("failed", "internal")
    assert file.error_message and "upload the file again" in file.error_message
    assert file_parts(ctx, file_id) == 0
    assert chunk_rows(ctx, file_id=file_id) == []
    assert index_version(ctx, assistant_id) == 0


@pytest.mark.model
def test_progress_only_moves_forward_and_is_visible_as_it_goes(
    ctx: Context, assistant_id: int
) -> None:
    file_id = queue(ctx, assistant_id, "orders.txt", long_text(EMBED_BATCH + 6))
    assert training.claim_file(ctx, file_id=file_id)
    seen: list[tuple[int, int, str]] = []

    def on_progress(percent: int) -> None:
        stored = file_row(ctx, file_id)
        seen.append((percent, stored.progress, stored.status))

    assert training.process_file(ctx, file_id=file_id, on_progress=on_progress)
    percents = [percent for percent, _, _ in seen]
    assert len(percents) >= 5  # extraction, chunking and at least two embedding batches
    assert percents == sorted(percents)
    assert percents[0] > 0 and percents[-1] == 100
    assert percents.count(100) == 1
    # Each step is in the database before the caller hears of it; ready only at 100.
    assert all(stored == percent for percent, stored, _ in seen)
    assert all(status == "processing" for percent, _, status in seen if percent < 100)
    assert seen[-1][2] == "ready"
    assert file_row(ctx, file_id).chunks > EMBED_BATCH


@pytest.mark.model
def test_a_file_deleted_while_it_is_processed_leaves_nothing_behind(
    ctx: Context, assistant_id: int
) -> None:
    file_id = queue(ctx, assistant_id, "orders.txt", long_text(3))
    assert training.claim_file(ctx, file_id=file_id)

    def delete_midway(percent: int) -> None:
        if percent == 20:
            with ctx.db.uow() as uow:
                assistant = uow.session.get(Assistant, assistant_id)
                assert assistant is not None
                training.delete_file(
                    uow.session, assistant=assistant, file_id=file_id, now=ctx.clock.now()
                )
                uow.commit()

    assert training.process_file(ctx, file_id=file_id, on_progress=delete_midway) is False
    assert chunk_rows(ctx, assistant_id=assistant_id) == []
    with ctx.db.read() as session:
        assert session.get(TrainingFile, file_id) is None


def test_a_file_deleted_after_it_was_claimed_does_not_crash_the_job(
    ctx: Context, assistant_id: int
) -> None:
    file_id = queue(ctx, assistant_id, "note.txt", note(1))
    assert training.claim_file(ctx, file_id=file_id)
    with ctx.db.uow() as uow:
        assistant = uow.session.get(Assistant, assistant_id)
        assert assistant is not None
        training.delete_file(uow.session, assistant=assistant, file_id=file_id, now=ctx.clock.now())
        uow.commit()
    assert training.process_file(ctx, file_id=file_id) is False
    assert training.process_queue(ctx) == {"ready": 0, "failed": 0}


@pytest.mark.model
def test_the_worker_trains_queued_files(ctx: Context, assistant_id: int) -> None:
    ids = [queue(ctx, assistant_id, f"note{n}.txt", note(n)) for n in range(3)]
    results = Worker(ctx, names=["training"]).tick()
    assert results == {"training": {"ready": 3, "failed": 0}}
    assert all(file_row(ctx, file_id).status == "ready" for file_id in ids)
    with ctx.db.read() as session:
        vectors = [np.frombuffer(row, "<f4") for row in session.scalars(select(Chunk.embedding))]
    assert len(vectors) == 3
    assert all(v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in vectors)


@pytest.fixture
def served(ctx: Context) -> Iterator[TestClient]:
    """The app with its in-process worker, polling only once a minute unless woken."""
    slow = Context(
        settings=ctx.settings.model_copy(update={"worker_interval_seconds": 60}),
        db=ctx.db,
        clock=ctx.clock,
        gateway=ctx.gateway,
    )
    with TestClient(create_app(slow, run_worker=True)) as client:
        yield client
    for thread in threading.enumerate():  # stopped on shutdown; let its last tick finish
        if thread.name.startswith("chatmeter-worker"):
            thread.join(timeout=30)


def training_lane_sleeps() -> bool:
    """Whether the worker's training lane waits for its interval or a wake-up: its
    thread's stack then ends in ``Event.wait`` called from the lane's loop (during a
    tick, the loop calls the jobs instead)."""
    for thread in threading.enumerate():
        if thread.name == "chatmeter-worker-training" and thread.ident is not None:
            frame = sys._current_frames().get(thread.ident)
            calls = []
            while frame is not None and len(calls) < 3:
                calls.append(frame.f_code.co_qualname)
                frame = frame.f_back
            return calls == ["Condition.wait", "Event.wait", "Worker._run_lane"]
    return False


@pytest.mark.model
def test_an_upload_wakes_the_in_process_worker_which_trains_it(
    ctx: Context, served: TestClient
) -> None:
    dana = caller(ctx, served, "dana@example.com")
    assistant = dana.new_assistant()["id"]
    wait_for(training_lane_sleeps, "the first tick to end")  # only a wake-up can help now
    response = dana.client.post(
        f"/api/v1/assistants/{assistant}/files",
        files=[("files", ("note.txt", note(7), "text/plain"))],
    )
    assert response.status_code == 201
    file_id = response.json()[0]["id"]
    deadline = time.monotonic() + 45
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = dana.client.get(f"/api/v1/assistants/{assistant}/files/{file_id}").json()
        if shown["status"] in ("ready", "failed"):
            break
        time.sleep(0.1)
    assert (shown["status"], shown["progress"], shown["chunks"]) == ("ready", 100, 1)


@pytest.mark.model
def test_a_heading_longer_than_its_column_does_not_leave_the_file_stuck(
    ctx: Context, assistant_id: int
) -> None:
    """A "word" past the tokenizer's 100 characters counts as one token, so a heading can
    fit the chunker's token budget and still run to thousands of characters."""
    heading = " ".join(["x" * 120] * 20)
    file_id = queue(ctx, assistant_id, "odd.md", f"# {heading}\n\nSome text under it.\n".encode())
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    assert file_row(ctx, file_id).status == "ready"
    rows = chunk_rows(ctx, file_id=file_id)
    assert all(len(heading) <= 1000 for _, _, _, heading, _ in rows)
    assert any("Some text under it." in text for _, _, _, _, text in rows)


@pytest.mark.model
def test_a_file_replaced_under_its_id_while_it_is_trained_gets_none_of_its_passages(
    ctx: Context, assistant_id: int
) -> None:
    """Defence in depth: should an id ever be given to a new file while the old one is
    in training (SQLite reuses the highest id of a deleted row), the job must not
    store the old file's passages into the new one, nor fail it, nor touch its upload."""
    file_id = queue(ctx, assistant_id, "orders.txt", long_text(3))
    assert training.claim_file(ctx, file_id=file_id)
    stranger = new_account(ctx, email="stranger@example.com")
    with ctx.db.uow() as uow:
        theirs = assistants.create_assistant(
            uow.session,
            account_id=stranger,
            fields=AssistantFields(name="Theirs"),
            now=ctx.clock.now(),
        ).id
        uow.commit()
    secret = b"The stranger's price list: everything costs a fortune."

    def replace_midway(percent: int) -> None:
        if percent != 20:
            return
        with ctx.db.uow() as uow:
            mine = uow.session.get(Assistant, assistant_id)
            assert mine is not None
            training.delete_file(uow.session, assistant=mine, file_id=file_id, now=ctx.clock.now())
            uow.session.add(
                TrainingFile(
                    id=file_id,  # the same id, another account's new file
                    assistant_id=theirs,
                    account_id=stranger,
                    filename="prices.txt",
                    size=len(secret),
                    sha256=hashlib.sha256(secret).hexdigest(),
                    status="queued",
                    attempts=0,
                    created_at=ctx.clock.now(),
                    updated_at=ctx.clock.now(),
                )
            )
            uow.session.flush()
            uow.session.add(FilePart(file_id=file_id, ordinal=0, data=secret))
            uow.commit()

    assert training.process_file(ctx, file_id=file_id, on_progress=replace_midway) is False
    replaced = file_row(ctx, file_id)
    assert (replaced.assistant_id, replaced.status, replaced.chunks) == (theirs, "queued", 0)
    assert (replaced.progress, replaced.error_code) == (0, None)
    assert file_parts(ctx, file_id) == 1
    assert chunk_rows(ctx, file_id=file_id) == []
    assert index_version(ctx, theirs) == 0
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}  # theirs, trained as theirs
    assert "fortune" in chunk_rows(ctx, file_id=file_id)[0][4]


@pytest.mark.model
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_trained_file_is_in_the_full_text_index_proper_not_its_pending_list(
    ctx: Context, assistant_id: int
) -> None:
    """PostgreSQL queues new entries of a GIN index in a pending list until autovacuum
    merges them (within a minute in production, never on the test server); until then
    every keyword search reads the list, and the planner turns to a sequential scan. The
    job merges them once the file's passages are stored."""
    from sqlalchemy import text

    with ctx.db.engine.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgstattuple"))
        conn.commit()
    queue(ctx, assistant_id, "orders.txt", long_text(12))

    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}

    with ctx.db.read() as session:
        pending = session.execute(
            text("SELECT pending_pages, pending_tuples FROM pgstatginindex('ix_chunks_fulltext')")
        ).one()
    assert len(chunk_rows(ctx, assistant_id=assistant_id)) >= 12
    assert tuple(pending) == (0, 0)
