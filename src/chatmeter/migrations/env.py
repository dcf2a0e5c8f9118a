"""Alembic environment: the URL comes from the caller or CHATMETER_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context

from chatmeter import models
from chatmeter.config import Settings
from chatmeter.db import make_engine, normalise_url
from chatmeter.migrate import include_object

config = context.config
target_metadata = models.Base.metadata


def database_url() -> str:
    # Only the database's address: running alembic by hand needs no other setting.
    url = config.attributes.get("database_url") or os.environ.get(
        "CHATMETER_DATABASE_URL", Settings.model_fields["database_url"].default
    )
    return normalise_url(url)


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(database_url())
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # SQLite changes a table by rebuilding it, which drops the old one; with
            # foreign keys enforced that would delete the rows referring to it. Set
            # outside any transaction (inside one SQLite ignores it); migrations that
            # rebuild check ``PRAGMA foreign_key_check`` before they commit.
            driver = connection.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
