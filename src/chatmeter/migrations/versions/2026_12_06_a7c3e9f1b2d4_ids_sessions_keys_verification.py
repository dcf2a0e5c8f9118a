"""ids never reused, per-user session secrets, API key scopes, email verification

- SQLite: every table keyed by a surrogate integer is rebuilt with AUTOINCREMENT,
  so that an id whose row was deleted is never handed out again (SQLite reuses
  the largest rowid otherwise). PostgreSQL sequences never go back: nothing to do.
  The rebuild keeps each table's exact DDL, data, indexes and triggers (the
  ledger's append-only triggers, the full-text index's triggers on chunks).
- users: ``session_secret`` (random, signed into every session cookie) replaces
  ``session_epoch``; every existing session ends.
- api_keys: ``scope`` (existing keys keep full access, ``all``) and ``last_used_at``.
- accounts: ``email_verified_at``; existing accounts count as verified.

Ids deleted *before* this upgrade from the top of a SQLite table may be handed
out once more: SQLite kept no record of them. Sessions are safe regardless
(the new secret), and every other lookup by id is scoped to its account.

Revision ID: a7c3e9f1b2d4
Revises: d4e5f6a7b8c9
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chatmeter.db

revision: str = "a7c3e9f1b2d4"
down_revision: str | None = "d4e5f6a7b8c9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables keyed by a surrogate integer ``id`` as of this revision.
SURROGATE_KEYED = (
    "accounts",
    "api_keys",
    "assistants",
    "chunks",
    "conversations",
    "idempotency_records",
    "invoices",
    "ledger_entries",
    "messages",
    "outbox_messages",
    "panel_tokens",
    "token_grants",
    "token_holds",
    "training_files",
    "users",
)


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column(
        "accounts",
        sa.Column("email_verified_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.execute("UPDATE accounts SET email_verified_at = created_at")
    op.add_column(
        "api_keys", sa.Column("scope", sa.String(length=16), server_default="all", nullable=False)
    )
    op.add_column(
        "api_keys",
        sa.Column("last_used_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column("users", sa.Column("session_secret", sa.String(length=64), nullable=True))
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("session_secret", sa.String))
    for (user_id,) in bind.execute(sa.select(users.c.id)).all():
        bind.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(session_secret=secrets.token_urlsafe(32))
        )
    if bind.dialect.name == "sqlite":
        # Native since SQLite 3.35; NOT NULL comes with the rebuild below.
        op.execute("ALTER TABLE users DROP COLUMN session_epoch")
        _rebuild_with_autoincrement(bind)
    else:
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.alter_column("session_secret", existing_type=sa.String(64), nullable=False)
            batch_op.drop_column("session_epoch")


def downgrade() -> None:
    # AUTOINCREMENT stays: it changes nothing the earlier code relies on.
    op.add_column(
        "users", sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False)
    )
    if op.get_bind().dialect.name == "sqlite":
        for table, column in (
            ("users", "session_secret"),
            ("api_keys", "last_used_at"),
            ("api_keys", "scope"),
            ("accounts", "email_verified_at"),
        ):
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        return
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_secret")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("scope")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")


# --- SQLite: rebuild a table with AUTOINCREMENT ------------------------------------------


def _rebuild_with_autoincrement(bind: sa.Connection) -> None:
    """SQLite's own recipe for a changed table (https://sqlite.org/lang_altertable.html):
    create the new table, copy the rows, drop the old one, rename the new one, and
    re-create the old one's indexes and triggers from their stored SQL.

    Foreign keys must not be enforced meanwhile (dropping a parent table would delete
    its children's parents): ``migrations/env.py`` turns them off on SQLite, and the
    result is checked with ``PRAGMA foreign_key_check`` before the upgrade commits.
    """
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "rebuilding tables needs PRAGMA foreign_keys=OFF (see migrations/env.py)"
        )
    for table in SURROGATE_KEYED:
        (ddl,) = bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).one()
        if "AUTOINCREMENT" in ddl.upper():
            continue  # created by this version's models already
        dependents = bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (table,),
        ).all()
        staging = f"_{table}_autoincrement"
        bind.exec_driver_sql(_autoincrement_ddl(ddl, table, staging))
        bind.exec_driver_sql(f'INSERT INTO "{staging}" SELECT * FROM "{table}"')
        bind.exec_driver_sql(f'DROP TABLE "{table}"')
        bind.exec_driver_sql(f'ALTER TABLE "{staging}" RENAME TO "{table}"')
        for (statement,) in dependents:
            bind.exec_driver_sql(statement)
    problems = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if problems:
        raise RuntimeError(f"foreign keys broken by the rebuild: {problems[:5]}")


def _autoincrement_ddl(ddl: str, table: str, staging: str) -> str:
    """The table's own CREATE TABLE, renamed, with ``id ... PRIMARY KEY AUTOINCREMENT``
    in place of the ``pk_<table>`` constraint, as ``Base.metadata.create_all`` writes it."""
    steps = [
        (rf'^CREATE TABLE "?{table}"? \(', f'CREATE TABLE "{staging}" ('),
        (r"\bid INTEGER NOT NULL\b", "id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT"),
        (rf",\s*CONSTRAINT pk_{table} PRIMARY KEY \(id\)", ""),
    ]
    if table == "users":
        steps.append((r"\bsession_secret VARCHAR\(64\)", "session_secret VARCHAR(64) NOT NULL"))
    for pattern, replacement in steps:
        ddl, count = re.subn(pattern, replacement, ddl)
        if count != 1:
            raise RuntimeError(f"unexpected schema of {table}: {pattern!r} matched {count} times")
    return ddl
