"""The training job: claim a queued file, have the training process read it, store its passages.

Extraction, chunking and embedding run in the training process
(``training.sandbox``), under the operator's limits on memory, CPU time and
wall-clock time and the caps on unpacked size, pages and passages. Progress is
written in small transactions as it goes; the passages land in one final
transaction together with the status ``ready``, so a file that fails half-way
leaves nothing behind but its explained failure.

Every write after the file is read checks that the row is still that file (its
id and its SHA-256): should an id ever be given to a new file meanwhile, the
job leaves the newcomer alone rather than store, fail or advance it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, or_, select, text, true, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import ObjectDeletedError

from chatmeter.assistants.models import Assistant
from chatmeter.config import Settings
from chatmeter.db import rowcount
from chatmeter.knowledge.errors import ExtractionError, QuotaReached
from chatmeter.services import Basics
from chatmeter.training.child import Job, Processed
from chatmeter.training.models import Chunk, FileStatus, TrainingFile
from chatmeter.training.parts import drop_parts, read_parts
from chatmeter.training.quotas import Quota, lock, passages_room
from chatmeter.training.titles import detected_title


class TrainingServices(Basics, Protocol):
    """What training needs of the application (``chatmeter.context.Context``)."""


log = logging.getLogger("chatmeter.training")

MAX_ATTEMPTS = 3
HEADING_CHARS = 1000  # the column's width; a heading path longer than that is cut
GAVE_UP = -1  # _claim's answer for a file it failed instead of handing out
LEASE_MARGIN = dt.timedelta(minutes=5)  # past the wall-clock limit: storing, progress


def processing_lease(settings: Settings) -> dt.timedelta:
    """How long a claimed file is this worker's: it never outlives the training limit."""
    return dt.timedelta(seconds=settings.training_wall_seconds) + LEASE_MARGIN


def process_queue(ctx: TrainingServices, *, limit: int = 10) -> dict[str, int]:
    """Process queued files (the ``training`` job); each file is claimed by one worker.

    It stops early when the training process is closed: the worker is stopping.
    """
    from chatmeter.training.sandbox import SandboxClosed

    done = failed = 0
    for _ in range(limit):
        file_id = _claim(ctx)
        if file_id is None:
            break
        try:
            if file_id == GAVE_UP:
                failed += 1
            elif process_file(ctx, file_id=file_id):
                done += 1
            else:
                failed += 1
        except SandboxClosed:
            break
    return {"ready": done, "failed": failed}


def process_file(
    ctx: TrainingServices, *, file_id: int, on_progress: Callable[[int], None] | None = None
) -> bool:
    """Extract, chunk, embed and index one claimed file; returns whether it is ready.

    ``SandboxClosed`` when the training process is stopped meanwhile; the file is
    back in the queue.
    """
    from chatmeter.training import sandbox

    settings = ctx.settings
    quota = Quota.of(settings)
    with ctx.db.read() as session:
        file = session.get(TrainingFile, file_id)
        if file is None:
            return False
        filename, sha256 = file.filename, file.sha256
        room = passages_room(session, account_id=file.account_id, quota=quota, excluding=file_id)

    def progress(percent: int) -> None:
        with ctx.db.uow() as uow:
            uow.session.execute(
                update(TrainingFile)
                .where(TrainingFile.id == file_id, TrainingFile.sha256 == sha256)
                .values(progress=percent, updated_at=ctx.clock.now())
            )
            uow.commit()
        if on_progress:
            on_progress(percent)

    log.info("training file %s (%s) started", file_id, filename)
    try:
        with _written(ctx, file_id, sha256) as path:
            if path is None:  # no bytes left (deleted, finished elsewhere), or other bytes
                return False
            job = Job(
                path=str(path),
                filename=filename,
                max_bytes=settings.max_upload_bytes,
                max_unpacked_bytes=settings.training_max_unpacked_bytes,
                max_pages=settings.training_max_pages,
                max_chunks=settings.training_max_chunks,
                passages_left=room,
                passages_limit=quota.passages,
                cpu_seconds=settings.training_cpu_seconds,
            )
            result = sandbox.shared(settings).run(
                job, wall_seconds=settings.training_wall_seconds, on_progress=progress
            )
    except ExtractionError as exc:
        log.info("training file %s failed: %s", file_id, exc.reason)
        _fail(ctx, file_id, code=exc.reason, message=exc.message, sha256=sha256)
        return False
    except sandbox.SandboxClosed:  # the worker is stopping: another will take it up
        _requeue(ctx, file_id, sha256)
        raise
    except Exception as exc:  # a bug must not leave the file "processing"
        failure = f"processing failed: {type(exc).__name__}"
        _fail(ctx, file_id, code="internal", message=failure, sha256=sha256)
        raise
    if not _store_or_fail(ctx, file_id, sha256, result):
        return False
    if on_progress:
        on_progress(100)
    return True


@contextlib.contextmanager
def _written(ctx: TrainingServices, file_id: int, sha256: str) -> Iterator[Path | None]:
    """The stored upload in a temporary file for the training process to read;
    None if there is none, or if its bytes are not the file's (``sha256``)."""
    directory = ctx.settings.data_dir / "uploads"
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=directory, prefix="training-") as handle:
        with ctx.db.read() as session:
            for part in read_parts(session, file_id=file_id):
                handle.write(part)
                digest.update(part)
        handle.flush()
        same = handle.tell() > 0 and digest.hexdigest() == sha256
        yield Path(handle.name) if same else None


def _store_or_fail(ctx: TrainingServices, file_id: int, sha256: str, result: Processed) -> bool:
    try:
        return _store(ctx, file_id, sha256, result)
    except Exception as exc:
        failure = f"storing failed: {type(exc).__name__}"
        _fail(ctx, file_id, code="internal", message=failure, sha256=sha256)
        raise


def _store(ctx: TrainingServices, file_id: int, sha256: str, result: Processed) -> bool:
    """The passages land in one transaction with the status ``ready``, if the row is
    still the file that was read and they still fit the account's quota (other
    files may have finished meanwhile)."""
    pieces, matrix, sentences = result.pieces, result.vectors, result.sentence_vectors
    quota = Quota.of(ctx.settings)
    with ctx.db.uow() as uow:
        session = uow.session
        file = session.get(TrainingFile, file_id)
        if file is None:  # deleted while it was processed
            return False
        lock(session, account_id=file.account_id)  # the account first, as an upload does
        try:
            session.refresh(file, with_for_update=True)
        except ObjectDeletedError:  # deleted just now
            return False
        if file.sha256 != sha256 or file.status != FileStatus.PROCESSING:
            return False  # replaced, or given up on, while it was processed
        room = passages_room(session, account_id=file.account_id, quota=quota, excluding=file_id)
        if len(pieces) > room:
            refusal = QuotaReached.passages(making=len(pieces), room=room, limit=quota.passages)
            file.status, file.leased_until = FileStatus.FAILED, None
            file.error_code, file.error_message = refusal.reason, refusal.message[:500]
            file.updated_at = ctx.clock.now()
            drop_parts(session, file_id)
            uow.commit()
            return False
        session.execute(delete(Chunk).where(Chunk.file_id == file_id))
        session.add_all(
            Chunk(
                assistant_id=file.assistant_id,
                file_id=file_id,
                ordinal=i,
                page=p.page,
                heading=" › ".join(p.heading_path)[:HEADING_CHARS],
                text=p.text,
                tokens=p.tokens,
                embedding=matrix[i].tobytes(),
                sentence_vectors=sentences[i] if i < len(sentences) else None,
            )
            for i, p in enumerate(pieces)
        )
        file.status = FileStatus.READY
        file.format = result.format
        file.detected_title = detected_title(result.title, file.filename)
        file.progress = 100
        file.pages = result.pages
        file.chunks = len(pieces)
        file.tokens = sum(p.tokens for p in pieces)
        file.leased_until = None
        file.updated_at = ctx.clock.now()
        drop_parts(session, file_id)
        bump_index(session, file.assistant_id, ctx.clock.now())
        uow.commit()
    _merge_pending_index(ctx)
    return True


def _merge_pending_index(ctx: TrainingServices) -> None:
    """PostgreSQL: move the new passages' full-text entries from the GIN index's pending
    list into the index proper. Autovacuum would, within a minute; until then every
    keyword search reads the whole list, and the planner turns to a sequential scan
    (11 ms instead of 2.6 for a question at 10,000 passages, docs/benchmarks.md). Best
    effort: the passages are stored and searchable either way."""
    if not ctx.db.is_postgres:
        return
    try:
        with ctx.db.engine.connect() as conn:
            conn.execute(text("SELECT gin_clean_pending_list('ix_chunks_fulltext')"))
            conn.commit()
    except SQLAlchemyError as exc:  # a role that does not own the index, say
        log.warning("could not merge the full-text index's pending list: %s", exc)


def claim_file(ctx: TrainingServices, *, file_id: int) -> bool:
    """Claim one queued file for processing here and now (``chatmeter train``)."""
    return _claim(ctx, file_id=file_id) == file_id


def _claim(ctx: TrainingServices, *, file_id: int | None = None) -> int | None:
    """Take the next due file (or ``file_id``) under a lease; a crashed worker's lease runs out."""
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        session = uow.session
        query = (
            select(TrainingFile.id)
            .where(
                or_(
                    TrainingFile.status == FileStatus.QUEUED,
                    (TrainingFile.status == FileStatus.PROCESSING)
                    & (TrainingFile.leased_until <= now),
                )
            )
            .order_by(TrainingFile.id)
            .limit(1)
        )
        if file_id is not None:
            query = query.where(TrainingFile.id == file_id)
        if ctx.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        file_id = session.scalar(query)
        if file_id is None:
            return None
        file = session.get(TrainingFile, file_id)
        assert file is not None
        file.attempts += 1
        if file.attempts > MAX_ATTEMPTS:  # it crashed the worker every time: give up, explained
            file.status = FileStatus.FAILED
            file.error_code = "internal"
            file.error_message = "processing failed repeatedly; please upload the file again"
            drop_parts(session, file_id)
            uow.commit()
            return GAVE_UP
        file.status = FileStatus.PROCESSING
        file.leased_until = now + processing_lease(ctx.settings)
        file.updated_at = now
        uow.commit()
        return file_id


def _fail(
    ctx: TrainingServices, file_id: int, *, code: str, message: str, sha256: str | None = None
) -> None:
    """Fail the file, explained (only the file with ``sha256``, when given)."""
    with ctx.db.uow() as uow:
        same = TrainingFile.sha256 == sha256 if sha256 is not None else true()
        failed = rowcount(
            uow.session.execute(
                update(TrainingFile)
                .where(TrainingFile.id == file_id, same)
                .values(
                    status=FileStatus.FAILED,
                    error_code=code[:32],
                    error_message=message[:500],
                    leased_until=None,
                    updated_at=ctx.clock.now(),
                )
            )
        )
        if failed:
            drop_parts(uow.session, file_id)
        uow.commit()


def _requeue(ctx: TrainingServices, file_id: int, sha256: str) -> None:
    """Hand a file back to the queue, as if this attempt had not been made."""
    with ctx.db.uow() as uow:
        uow.session.execute(
            update(TrainingFile)
            .where(
                TrainingFile.id == file_id,
                TrainingFile.sha256 == sha256,
                TrainingFile.status == FileStatus.PROCESSING,
            )
            .values(
                status=FileStatus.QUEUED,
                progress=0,
                attempts=TrainingFile.attempts - 1,
                leased_until=None,
                updated_at=ctx.clock.now(),
            )
        )
        uow.commit()


def bump_index(session: Session, assistant_id: int, now: dt.datetime) -> None:
    session.execute(
        update(Assistant)
        .where(Assistant.id == assistant_id)
        .values(index_version=Assistant.index_version + 1, updated_at=now)
    )
