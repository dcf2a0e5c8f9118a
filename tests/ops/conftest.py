"""Fixtures for the operator's tools: migrated databases, an SMTP server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from chatmeter.migrate import upgrade
from tests.conftest import postgres_admin_url
from tests.notifications.smtp_server import SmtpServer


@pytest.fixture(scope="module")
def migrated_postgres(worker_id: str) -> Iterator[str]:
    """A PostgreSQL database of its own, built by the migrations (not ``create_all``)."""
    admin = postgres_admin_url()
    if admin is None:
        if os.environ.get("CHATMETER_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required but CHATMETER_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL unavailable: CHATMETER_TEST_POSTGRES_URL is not set")
    name = f"chatmeter_doctor_{worker_id}_{os.getpid()}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at the latest migration, on SQLite or PostgreSQL."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("migrated_postgres")
        return url
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade(url)
    return url


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(auth=True)
    server.start()
    yield server
    server.stop()
