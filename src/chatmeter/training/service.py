"""Training files: upload, listing, deletion. Processing is the job's (``training.job``).

An upload's bytes are stored in parts (``training.parts``) until the job has
turned them into passages. The job's entry points are re-exported here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.db import queue_work
from chatmeter.errors import InvalidInput, NotFound, PayloadTooLarge
from chatmeter.storable import NUL_MESSAGE, has_nul
from chatmeter.training.content import Content
from chatmeter.training.job import (
    MAX_ATTEMPTS,
    bump_index,
    claim_file,
    process_file,
    process_queue,
    processing_lease,
)
from chatmeter.training.models import Chunk, FilePart, FileStatus, TrainingFile
from chatmeter.training.parts import drop_parts, read_parts, store_parts
from chatmeter.training.quotas import DEFAULT as DEFAULT_QUOTA
from chatmeter.training.quotas import Quota, QuotaExceeded, check_upload, lock
from chatmeter.training.titles import MAX_TITLE, shown_title

__all__ = [
    "MAX_ATTEMPTS",
    "Quota",
    "QuotaExceeded",
    "Upload",
    "chunk_count",
    "claim_file",
    "delete_all_files",
    "delete_file",
    "file_dict",
    "get_file",
    "list_files",
    "process_file",
    "process_queue",
    "processing_lease",
    "read_parts",
    "set_title",
    "upload",
]

MAX_FILENAME = 255
# Files one upload request may carry (the API's and the panel's alike).
MAX_FILES_PER_UPLOAD = 20
FILE_COUNT_MESSAGE = f"choose 1 to {MAX_FILES_PER_UPLOAD} files to upload"


def check_file_count(count: int) -> None:
    """``InvalidInput`` unless one upload carries 1 to ``MAX_FILES_PER_UPLOAD`` files."""
    if not 1 <= count <= MAX_FILES_PER_UPLOAD:
        raise InvalidInput(FILE_COUNT_MESSAGE, field="files")


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
    quota: Quota = DEFAULT_QUOTA,
) -> Upload:
    """Queue a file for training; the same content twice is recognised, not stored again.

    ``data`` may be a spooled ``Content``: its bytes are stored a part at a time,
    never held whole. A new file must fit the account's ``quota`` (files, bytes,
    passages) or ``QuotaExceeded`` is raised; callers pass the operator's
    (``Quota.of(settings)``), and one that forgets gets the default limits.
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
    lock(session, account_id=assistant.account_id)
    check_upload(
        session, account_id=assistant.account_id, filename=filename, size=content.size, quota=quota
    )
    if existing is not None:  # it failed before: this upload is a new try
        existing.filename = filename
        existing.status, existing.progress, existing.attempts = FileStatus.QUEUED, 0, 0
        existing.error_code = existing.error_message = None
        existing.leased_until, existing.updated_at = None, now
        store_parts(session, existing.id, content)
        queue_work(session)
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
    store_parts(session, file.id, content)
    queue_work(session)
    return Upload(file, duplicate=False)


def get_file(session: Session, *, assistant: Assistant, file_id: int) -> TrainingFile:
    file = session.get(TrainingFile, file_id)
    if file is None or file.assistant_id != assistant.id:
        raise NotFound("no such file", file_id=file_id)
    return file


def set_title(
    session: Session, *, assistant: Assistant, file_id: int, title: str, now: dt.datetime
) -> TrainingFile:
    """Name the file as visitors see it among an answer's sources; "" gives back the
    document's own title. Answers use it from their next turn."""
    file = get_file(session, assistant=assistant, file_id=file_id)
    cleaned = " ".join(title.split())
    if len(cleaned) > MAX_TITLE:
        raise InvalidInput(f"the title must be at most {MAX_TITLE} characters", field="title")
    if has_nul(cleaned):
        raise InvalidInput(f"the title {NUL_MESSAGE}", field="title")
    file.title = cleaned
    file.updated_at = now
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
    drop_parts(session, file.id)
    session.delete(file)
    bump_index(session, assistant.id, now)


def delete_all_files(session: Session, *, assistant: Assistant, now: dt.datetime) -> None:
    files = select(TrainingFile.id).where(TrainingFile.assistant_id == assistant.id)
    session.execute(delete(Chunk).where(Chunk.assistant_id == assistant.id))
    session.execute(delete(FilePart).where(FilePart.file_id.in_(files)))
    session.execute(delete(TrainingFile).where(TrainingFile.assistant_id == assistant.id))
    bump_index(session, assistant.id, now)


def file_dict(file: TrainingFile) -> dict[str, Any]:
    return {
        "id": file.id,
        "assistant_id": file.assistant_id,
        "filename": file.filename,
        # Visitors see ``source_title``: ``title`` (yours; "" when unset), else the
        # document's own title, else the file's name made readable.
        "title": file.title,
        "source_title": shown_title(file.title, file.detected_title, file.filename),
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


def chunk_count(session: Session, *, assistant_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Chunk).where(Chunk.assistant_id == assistant_id)
        )
        or 0
    )
