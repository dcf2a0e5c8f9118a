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


# --- ids never reused: AUTOINCREMENT on SQLite, and the upgrade that rebuilds the tables ---

BEFORE_AUTOINCREMENT = "d4e5f6a7b8c9"
SEED = [
    "INSERT INTO accounts (id, name, contact_email, timezone, created_at) "
    "VALUES (1, 'a', 'a@example.com', 'UTC', '2026-11-01 10:00:00')",
    "INSERT INTO users (id, account_id, email, password_hash, role, created_at) VALUES "
    "(1, 1, 'a@example.com', 'h', 'owner', '2026-11-01 10:00:00'), "
    "(2, 1, 'b@example.com', 'h', 'member', '2026-11-01 10:00:00'), "
    "(3, 1, 'gone@example.com', 'h', 'member', '2026-11-01 10:00:00')",
    "DELETE FROM users WHERE id = 3",
    "INSERT INTO api_keys (id, account_id, prefix, secret_hash, name, created_at) "
    "VALUES (1, 1, 'abcdef012345', 'x', 'default', '2026-11-01 10:00:00')",
    "INSERT INTO ledger_entries (id, account_id, kind, available_delta, reserved_delta, "
    "available_after, reserved_after, consumed, context_tokens, generation_tokens, expired, "
    "memo, created_at) VALUES (1, 1, 'grant', 5, 0, 5, 0, 0, 0, 0, 0, '', "
    "'2026-11-01 10:00:00')",
    "INSERT INTO assistants (id, account_id, public_key, name, instructions, provider, model, "
    "temperature, max_tokens, passages, context_budget, welcome_message, widget_title, "
    "widget_color, widget_position, allowed_domains, index_version, created_at, updated_at) "
    "VALUES (1, 1, 'pk', 'Helper', '', 'local', '', 0.2, 160, 3, 400, '', '', '#2563eb', "
    "'right', '', 0, '2026-11-01 10:00:00', '2026-11-01 10:00:00')",
    "INSERT INTO training_files (id, assistant_id, account_id, filename, size, sha256, status, "
    "progress, pages, chunks, tokens, attempts, created_at, updated_at) VALUES (1, 1, 1, "
    "'a.txt', 1, 'ab', 'ready', 100, 1, 1, 5, 0, '2026-11-01 10:00:00', "
    "'2026-11-01 10:00:00')",
    "INSERT INTO chunks (id, assistant_id, file_id, ordinal, page, heading, text, tokens, "
    "embedding) VALUES (1, 1, 1, 0, 1, 'Refunds', 'Refunds take fourteen days', 5, :blob)",
]


def _sqlite_tables(conn) -> dict[str, str]:  # type: ignore[no-untyped-def]
    rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    return {name: sql for name, sql in rows}


def _surrogate_keyed() -> list[str]:
    from chatmeter.db import has_surrogate_key

    return sorted(t.name for t in models.Base.metadata.sorted_tables if has_surrogate_key(t))


def test_every_table_keyed_by_a_number_has_autoincrement_on_sqlite(tmp_path: Path) -> None:
    """Without it SQLite hands the largest id out again once its row is deleted."""
    assert "users" in _surrogate_keyed() and "subscriptions" not in _surrogate_keyed()
    for url in (f"sqlite:///{tmp_path / 'created.db'}", f"sqlite:///{tmp_path / 'migrated.db'}"):
        if "created" in url:
            engine = create_engine(url)
            models.Base.metadata.create_all(engine)
        else:
            upgrade(url)
            engine = create_engine(url)
        with engine.connect() as conn:
            tables = _sqlite_tables(conn)
        engine.dispose()
        missing = [t for t in _surrogate_keyed() if "AUTOINCREMENT" not in tables[t].upper()]
        assert missing == [], url


def test_the_upgrade_keeps_every_row_index_and_trigger(
    empty_url: str, restore_schema: None
) -> None:
    upgrade(empty_url, BEFORE_AUTOINCREMENT)
    engine = create_engine(normalise_url(empty_url))
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        for statement in SEED:
            conn.execute(text(statement), {"blob": b"\x00"} if ":blob" in statement else {})
        if not sqlite:
            for table in ("accounts", "users", "api_keys", "ledger_entries"):
                conn.execute(text(f"SELECT setval('{table}_id_seq', 3)"))
    with engine.connect() as conn:
        inspector = inspect(conn)
        existing = set(inspector.get_table_names())  # tables added later are not there yet
        indexes = {
            t: {i["name"] for i in inspector.get_indexes(t)}
            for t in _surrogate_keyed()
            if t in existing
        }
    upgrade(empty_url)

    with engine.begin() as conn:
        inspector = inspect(conn)
        for table, names in indexes.items():
            assert {i["name"] for i in inspector.get_indexes(table)} >= names, table
        users = conn.execute(text("SELECT id, email, session_secret FROM users ORDER BY id")).all()
        assert [(u.id, u.email) for u in users] == [(1, "a@example.com"), (2, "b@example.com")]
        assert all(len(u.session_secret) >= 43 for u in users)
        assert users[0].session_secret != users[1].session_secret
        assert conn.execute(text("SELECT scope FROM api_keys")).scalar() == "all"
        verified = conn.execute(text("SELECT email_verified_at, created_at FROM accounts")).one()
        assert verified[0] == verified[1]
        # From now on a deleted user's id is never given to the next one. (SQLite kept no
        # record of ids deleted before the upgrade: the first new user may get 3 again.)
        ids = []
        for email in ("new@example.com", "next@example.com"):
            conn.execute(
                text(
                    "INSERT INTO users (account_id, email, password_hash, role, created_at, "
                    "session_secret) VALUES (1, :email, 'h', 'member', '2026-12-01 10:00:00', "
                    "'s')"
                ),
                {"email": email},
            )
            ids.append(conn.execute(text("SELECT max(id) FROM users")).scalar())
            conn.execute(text("DELETE FROM users WHERE email = :email"), {"email": email})
        assert ids[1] == ids[0] + 1
        if sqlite:
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
            tables = _sqlite_tables(conn)
            assert all("AUTOINCREMENT" in tables[t] for t in _surrogate_keyed())
            assert not [t for t in tables if t.endswith("_autoincrement")]
            # The full-text index still finds the old passage and follows new and deleted ones.
            conn.execute(
                text(
                    "INSERT INTO chunks (assistant_id, file_id, ordinal, page, heading, text, "
                    "tokens, embedding) VALUES (1, 1, 1, 1, 'Shipping', 'Parcels leave daily', "
                    "4, x'00')"
                )
            )
            conn.execute(text("DELETE FROM chunks WHERE id = 1"))
            found = conn.execute(
                text("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :q"), {"q": "parcels"}
            ).all()
            assert found == [(2,)]
            gone = conn.execute(
                text("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :q"), {"q": "refunds"}
            ).all()
            assert gone == []
    # The ledger is still append-only.
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE ledger_entries SET available_delta = 6"))
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries"))
    engine.dispose()
