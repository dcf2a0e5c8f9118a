"""Apply Alembic migrations from code (``chatmeter migrate``), no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from chatmeter.db import normalise_url

MIGRATIONS = Path(__file__).parent / "migrations"

# Database objects written as raw DDL (full-text search, triggers), which the
# models cannot describe: autogenerate and the schema test leave them alone.
RAW_DDL_OBJECTS = frozenset(
    {
        "ix_chunks_fulltext",
        "search_vector",
        "chunks_fts",
        "chunks_fts_data",
        "chunks_fts_idx",
        "chunks_fts_docsize",
        "chunks_fts_config",
        "chunks_fts_content",
    }
)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return name not in RAW_DDL_OBJECTS


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["database_url"] = normalise_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
