"""Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from chatmeter import models
from chatmeter.db import normalise_url
from chatmeter.migrate import include_object, upgrade


@pytest.fixture
def empty_url(db_url: str, tmp_path: Path) -> str:
    """An empty database, as on a fresh install."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return db_url


@pytest.fixture
def restore_schema(db_url: str):  # type: ignore[no-untyped-def]
    yield
    engine = create_engine(normalise_url(db_url))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            models.Base.metadata.create_all(conn)
    engine.dispose()


def test_migrations_match_the_models(empty_url: str, restore_schema: None) -> None:
    upgrade(empty_url)
    upgrade(empty_url)  # a second run is a no-op
    engine = create_engine(normalise_url(empty_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, models.Base.metadata)
        assert diff == []
        assert "alembic_version" in inspect(conn).get_table_names()
    engine.dispose()


def test_migrated_ledger_is_append_only(empty_url: str, restore_schema: None) -> None:
    upgrade(empty_url)
    engine = create_engine(normalise_url(empty_url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (name, contact_email, timezone, created_at) "
                "VALUES ('a', 'a@example.com', 'UTC', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ledger_entries (account_id, kind, available_delta, reserved_delta, "
                "available_after, reserved_after, consumed, context_tokens, generation_tokens, "
                "expired, memo, created_at) VALUES (1, 'grant', 5, 0, 5, 0, 0, 0, 0, 0, '', "
                "CURRENT_TIMESTAMP)"
            )
        )
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET available_delta = 6"))
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries"))
    engine.dispose()
