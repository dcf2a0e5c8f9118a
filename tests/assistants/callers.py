"""API callers for the assistant and training tests: accounts with their own API keys,
and the database figures the tests compare before and after a request."""

from __future__ import annotations

from sqlalchemy import func, select

from chatmeter.assistants.models import Assistant
from chatmeter.context import Context
from chatmeter.training.models import Chunk, TrainingFile


def index_version(ctx: Context, assistant_id: int) -> int:
    with ctx.db.read() as session:
        assistant = session.get(Assistant, assistant_id)
        assert assistant is not None
        return assistant.index_version


def chunk_rows(ctx: Context, **where: int) -> list[tuple[int, int, int, str, str]]:
    """(id, file_id, page, heading, text) of the chunks with ``file_id=`` or ``assistant_id=``."""
    query = select(Chunk.id, Chunk.file_id, Chunk.page, Chunk.heading, Chunk.text).order_by(
        Chunk.id
    )
    for column, value in where.items():
        query = query.where(getattr(Chunk, column) == value)
    with ctx.db.read() as session:
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def file_count(ctx: Context, **where: int) -> int:
    query = select(func.count()).select_from(TrainingFile)
    for column, value in where.items():
        query = query.where(getattr(TrainingFile, column) == value)
    with ctx.db.read() as session:
        return session.scalar(query) or 0
