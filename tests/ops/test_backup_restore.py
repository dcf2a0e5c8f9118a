"""The backup and restore of docs/deploy.md, as written there: ``pg_dump --format=custom``
of a database in use, ``pg_restore`` into a fresh database, and the restored ledger
verifies with the same balances, invoices and entries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from chatmeter.billing import purchases
from chatmeter.billing.models import Invoice
from chatmeter.chat import caps
from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.ledger.models import Balance, LedgerEntry
from tests.conftest import postgres_admin_url
from tests.support.accounts import new_account, spend


def libpq(url: str) -> str:
    """The URL as pg_dump and pg_restore take it (no SQLAlchemy driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def figures(db: Database) -> tuple[list[tuple[int, int, int]], int, int]:
    with db.read() as session:
        balances = [
            (b.account_id, b.available, b.reserved)
            for b in session.scalars(select(Balance).order_by(Balance.account_id))
        ]
        invoices = session.scalar(select(func.count(Invoice.id))) or 0
        entries = session.scalar(select(func.count(LedgerEntry.id))) or 0
    return balances, invoices, entries


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_dump_restored_into_a_fresh_database_verifies(ctx: Context, tmp_path: Path) -> None:
    first = new_account(ctx, email="first@example.com")
    second = new_account(ctx, email="second@example.com")
    purchases.purchase(ctx, account_id=first, packages=2)
    purchases.purchase(ctx, account_id=second, packages=1)
    spend(ctx, first, 1234, "a turn")
    before = figures(ctx.db)

    dump = tmp_path / "chatmeter.dump"
    source = libpq(ctx.settings.database_url)
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", source], check=True)
    admin = postgres_admin_url()
    assert admin is not None
    fresh = f"chatmeter_restore_{os.getpid()}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{fresh}"'))
    restored_url = make_url(admin).set(database=fresh).render_as_string(hide_password=False)
    restored = Database(restored_url)
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={libpq(restored_url)}", str(dump)],
            check=True,
        )
        assert figures(restored) == before
        assert before[0] == [(first, 10_000 - 1234, 0), (second, 5_000, 0)]
        with restored.read() as session:
            reports = caps.verify(session, now=ctx.clock.now())
        assert reports and all(r.ok for r in reports), [r.problems for r in reports]
    finally:
        restored.dispose()
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)'))
        engine.dispose()
