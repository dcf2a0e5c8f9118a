"""Training files: upload, background processing, deletion.

Processing runs as a job: extract → chunk → embed → index. Progress is
written in small transactions as it goes; the passages land in one final
transaction together with the status ``ready``, so a file that fails half-way
leaves nothing behind but its explained failure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.context import Context
from chatmeter.errors import InvalidInput, NotFound, PayloadTooLarge
from chatmeter.training.content import Content
from chatmeter.training.models import Chunk, FilePart, FileStatus, TrainingFile

MAX_FILENAME = 255
PROCESSING_LEASE = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 3
HEADING_CHARS = 1000  # the column's width; a heading path longer than that is cut
EMBED_BATCH = 32
GAVE_UP = -1  # _claim's answer for a file it failed instead of handing out


@dataclass(frozen=True)
class Upload:
    file: TrainingFile
    duplicate: bool


def upload(
    session: Session,
    *,
    assistant: Assistant,
    filename: str,
    data: bytes | Content,
    max_bytes: int,
    now: dt.datetime,
) -> Upload:
    """Queue a file for training; the same content twice is recognised, not stored again.

    ``data`` may be a spooled ``Content``: its bytes are stored a part at a time,
    never held whole.
    """
    content = data if isinstance(data, Content) else Content.of_bytes(data)
    filename = (filename or "").strip().replace("\\", "/").rsplit("/", 1)[-1]
    if not filename or len(filename) > MAX_FILENAME:
        raise InvalidInput(
            f"a file name of 1 to {MAX_FILENAME} characters is required", field="filename"
        )
    if content.size > max_bytes:
        raise PayloadTooLarge(
            f"{filename} is {content.size:,} bytes; the limit is {max_bytes:,} bytes",
            filename=filename,
        )
    if not content.size:
        raise InvalidInput(f"{filename} is empty", field="file", filename=filename)
    digest = content.sha256
    existing = session.scalar(
        select(TrainingFile).where(
            TrainingFile.assistant_id == assistant.id, TrainingFile.sha256 == digest
        )
    )
    if existing is not None and existing.status != FileStatus.FAILED:
        return Upload(existing, duplicate=True)
    if existing is not None:  # it failed before: this upload is a new try
        existing.filename = filename
        existing.status, existing.progress, existing.attempts = FileStatus.QUEUED, 0, 0
        existing.error_code = existing.error_message = None
        existing.leased_until, existing.updated_at = None, now
        _store_parts(session, existing.id, content)
        return Upload(existing, duplicate=False)
    file = TrainingFile(
        assistant_id=assistant.id,
        account_id=assistant.account_id,
        filename=filename,
        size=content.size,
        sha256=digest,
        status=FileStatus.QUEUED,
        progress=0,
        pages=0,
        chunks=0,
        tokens=0,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():  # the same content uploaded at the same moment
            session.add(file)
    except IntegrityError:
        winner = session.scalar(
            select(TrainingFile).where(
                TrainingFile.assistant_id == assistant.id, TrainingFile.sha256 == digest
            )
        )
        assert winner is not None
        return Upload(winner, duplicate=True)
    _store_parts(session, file.id, content)
    return Upload(file, duplicate=False)


def _store_parts(session: Session, file_id: int, content: Content) -> None:
    """The upload's bytes, a part a row: one part in memory at a time."""
    _drop_parts(session, file_id)
    for ordinal, data in enumerate(content.parts()):
        session.execute(insert(FilePart).values(file_id=file_id, ordinal=ordinal, data=data))


def _drop_parts(session: Session, file_id: int) -> None:
    session.execute(delete(FilePart).where(FilePart.file_id == file_id))


def read_parts(session: Session, *, file_id: int) -> Iterator[bytes]:
    """The stored upload's bytes, a part at a time (one query a part: nothing buffers more)."""
    ordinal = 0
    while True:
        data = session.scalar(
            select(FilePart.data).where(FilePart.file_id == file_id, FilePart.ordinal == ordinal)
        )
        if data is None:
            return
        yield data
        ordinal += 1


def get_file(session: Session, *, assistant: Assistant, file_id: int) -> TrainingFile:
    file = session.get(TrainingFile, file_id)
    if file is None or file.assistant_id != assistant.id:
        raise NotFound("no such file", file_id=file_id)
    return file


def list_files(session: Session, *, assistant: Assistant) -> list[TrainingFile]:
    return list(
        session.scalars(
            select(TrainingFile)
            .where(TrainingFile.assistant_id == assistant.id)
            .order_by(TrainingFile.id)
        )
    )


def delete_file(session: Session, *, assistant: Assistant, file_id: int, now: dt.datetime) -> None:
    """Remove a file; its passages leave every later answer at once."""
    file = get_file(session, assistant=assistant, file_id=file_id)
    session.execute(delete(Chunk).where(Chunk.file_id == file.id))
    _drop_parts(session, file.id)
    session.delete(file)
    _bump_index(session, assistant.id, now)


def delete_all_files(session: Session, *, assistant: Assistant, now: dt.datetime) -> None:
    files = select(TrainingFile.id).where(TrainingFile.assistant_id == assistant.id)
    session.execute(delete(Chunk).where(Chunk.assistant_id == assistant.id))
    session.execute(delete(FilePart).where(FilePart.file_id.in_(files)))
    session.execute(delete(TrainingFile).where(TrainingFile.assistant_id == assistant.id))
    _bump_index(session, assistant.id, now)


def file_dict(file: TrainingFile) -> dict[str, Any]:
    return {
        "id": file.id,
        "assistant_id": file.assistant_id,
        "filename": file.filename,
        "size": file.size,
        "sha256": file.sha256,
        "format": file.format,
        "status": file.status,
        "progress": file.progress,
        "pages": file.pages,
        "chunks": file.chunks,
        "tokens": file.tokens,
        "error": {"code": file.error_code, "message": file.error_message}
        if file.status == FileStatus.FAILED
        else None,
        "created_at": file.created_at,
        "updated_at": file.updated_at,
    }


# --- the job -------------------------------------------------------------------


def process_queue(ctx: Context, *, limit: int = 10) -> dict[str, int]:
    """Process queued files (the ``training`` job); each file is claimed by one worker."""
    done = failed = 0
    for _ in range(limit):
        file_id = _claim(ctx)
        if file_id is None:
            break
        if file_id == GAVE_UP:
            failed += 1
        elif process_file(ctx, file_id=file_id):
            done += 1
        else:
            failed += 1
    return {"ready": done, "failed": failed}


def process_file(
    ctx: Context, *, file_id: int, on_progress: Callable[[int], None] | None = None
) -> bool:
    """Extract, chunk, embed and index one claimed file; returns whether it is ready."""
    from chatmeter.knowledge.chunking import chunk
    from chatmeter.knowledge.extract import ExtractionError, extract

    with ctx.db.read() as session:
        file = session.get(TrainingFile, file_id)
        if file is None:
            return False
        filename = file.filename
        data = b"".join(read_parts(session, file_id=file_id))
        if not data:
            return False
    embedder = ctx.embedder

    def progress(percent: int) -> None:
        with ctx.db.uow() as uow:
            uow.session.execute(
                update(TrainingFile)
                .where(TrainingFile.id == file_id)
                .values(progress=percent, updated_at=ctx.clock.now())
            )
            uow.commit()
        if on_progress:
            on_progress(percent)

    try:
        document = extract(data, filename=filename, max_bytes=ctx.settings.max_upload_bytes)
        progress(10)
        pieces = chunk(document, count_tokens=embedder.count_tokens)
        if not pieces:
            raise _no_text()
        progress(20)
        vectors: list[np.ndarray] = []
        for start in range(0, len(pieces), EMBED_BATCH):
            batch = pieces[start : start + EMBED_BATCH]
            vectors.append(embedder.embed([p.embedding_text for p in batch]))
            progress(20 + int(75 * min(len(pieces), start + EMBED_BATCH) / len(pieces)))
        matrix = np.vstack(vectors).astype("<f4")
    except ExtractionError as exc:
        _fail(ctx, file_id, code=exc.reason, message=exc.message)
        return False
    except Exception as exc:  # a bug or a broken model must not leave the file "processing"
        _fail(ctx, file_id, code="internal", message=f"processing failed: {type(exc).__name__}")
        raise
    if not _store_or_fail(ctx, file_id, document, pieces, matrix):
        return False
    if on_progress:
        on_progress(100)
    return True


def _store_or_fail(
    ctx: Context, file_id: int, document: Any, pieces: list[Any], matrix: np.ndarray
) -> bool:
    try:
        return _store(ctx, file_id, document, pieces, matrix)
    except Exception as exc:
        _fail(ctx, file_id, code="internal", message=f"storing failed: {type(exc).__name__}")
        raise


def _store(
    ctx: Context, file_id: int, document: Any, pieces: list[Any], matrix: np.ndarray
) -> bool:
    """The passages land in one transaction with the status ``ready``."""
    with ctx.db.uow() as uow:
        session = uow.session
        file = session.get(TrainingFile, file_id)
        if file is None:  # deleted while it was processed
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
            )
            for i, p in enumerate(pieces)
        )
        file.status = FileStatus.READY
        file.format = document.format
        file.progress = 100
        file.pages = len(document.pages)
        file.chunks = len(pieces)
        file.tokens = sum(p.tokens for p in pieces)
        file.leased_until = None
        _drop_parts(session, file_id)
        file.updated_at = ctx.clock.now()
        _bump_index(session, file.assistant_id, ctx.clock.now())
        uow.commit()
    return True


def _no_text() -> Exception:
    from chatmeter.knowledge.extract import ExtractionError

    return ExtractionError("empty", "the file contains no text to learn from")


def claim_file(ctx: Context, *, file_id: int) -> bool:
    """Claim one queued file for processing here and now (``chatmeter train``)."""
    return _claim(ctx, file_id=file_id) == file_id


def _claim(ctx: Context, *, file_id: int | None = None) -> int | None:
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
            _drop_parts(session, file_id)
            uow.commit()
            return GAVE_UP
        file.status = FileStatus.PROCESSING
        file.leased_until = now + PROCESSING_LEASE
        file.updated_at = now
        uow.commit()
        return file_id


def _fail(ctx: Context, file_id: int, *, code: str, message: str) -> None:
    with ctx.db.uow() as uow:
        uow.session.execute(
            update(TrainingFile)
            .where(TrainingFile.id == file_id)
            .values(
                status=FileStatus.FAILED,
                error_code=code[:32],
                error_message=message[:500],
                leased_until=None,
                updated_at=ctx.clock.now(),
            )
        )
        _drop_parts(uow.session, file_id)
        uow.commit()


def _bump_index(session: Session, assistant_id: int, now: dt.datetime) -> None:
    session.execute(
        update(Assistant)
        .where(Assistant.id == assistant_id)
        .values(index_version=Assistant.index_version + 1, updated_at=now)
    )


def chunk_count(session: Session, *, assistant_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.assistant_id == assistant_id)
        )
        or 0
    )
