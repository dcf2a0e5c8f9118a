"""An upload's bytes in the database, a part a row (``training_file_parts``).

Stored as they are read from the spool and read back a part at a time, so
that no process ever holds a whole upload; dropped when the file is ready,
failed or deleted.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from chatmeter.training.content import Content
from chatmeter.training.models import FilePart


def store_parts(session: Session, file_id: int, content: Content) -> None:
    """The upload's bytes, a part a row: one part in memory at a time."""
    drop_parts(session, file_id)
    for ordinal, data in enumerate(content.parts()):
        session.execute(insert(FilePart).values(file_id=file_id, ordinal=ordinal, data=data))


def drop_parts(session: Session, file_id: int) -> None:
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
