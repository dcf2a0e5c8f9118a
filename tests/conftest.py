"""Shared fixtures: a clock, settings, and a database on SQLite or PostgreSQL.

PostgreSQL tests need ``CHATMETER_TEST_POSTGRES_URL``; without it they skip,
unless ``CHATMETER_TEST_REQUIRE_POSTGRES=1`` (set by CI), which turns the skip
into a failure.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from chatmeter import models
from chatmeter.accounts import opening
from chatmeter.accounts import service as accounts
from chatmeter.billing import periods, subscriptions
from chatmeter.billing.gateways import ManualGateway
from chatmeter.billing.models import Subscription
from chatmeter.clock import FixedClock
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.db import Database, normalise_url
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance, GrantSource
from chatmeter.ledger.verify import verify
from chatmeter.notifications import balance_notices

START = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)


def postgres_admin_url() -> str | None:
    url = os.environ.get("CHATMETER_TEST_POSTGRES_URL")
    return normalise_url(url) if url else None


def _require_postgres() -> bool:
    return os.environ.get("CHATMETER_TEST_REQUIRE_POSTGRES") == "1"


def _unavailable(reason: str) -> None:
    if _require_postgres():
        pytest.fail(f"PostgreSQL is required but unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    """A database of this test process's own, created once and dropped at the end."""
    admin = postgres_admin_url()
    if admin is None:
        _unavailable("CHATMETER_TEST_POSTGRES_URL is not set")
    name = f"chatmeter_test_{worker_id}_{os.getpid()}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # connection refused, auth...
        engine.dispose()
        _unavailable(str(exc).splitlines()[0])
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    created = Database(url)
    created.create_all()
    created.dispose()
    yield url
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chatmeter.db'}"
        database = Database(url)
        database.create_all()
        database.dispose()
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    _truncate(url)
    yield url


def _truncate(url: str) -> None:
    engine = create_engine(normalise_url(url))
    tables = ", ".join(f'"{t.name}"' for t in models.Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        _env_file=None,
        env=Env.TEST,
        database_url=db_url,
        data_dir=tmp_path / "var",
        worker="none",
        demo=False,
        models=["local", "openai:gpt-4o-mini"],
    )


@pytest.fixture
def ctx(settings: Settings, db: Database, clock: FixedClock) -> Context:
    """Everything an entry point needs, on the test's database and clock."""
    return Context(settings=settings, db=db, clock=clock, gateway=ManualGateway(auto_approve=True))


def new_account(ctx: Context, *, email: str = "owner@example.com", timezone: str = "UTC") -> int:
    """Open an account as the operator does (balance, subscription, owner); return its id."""
    with ctx.db.uow() as uow:
        owner = opening.open_account(
            uow.session, settings=ctx.settings, email=email, timezone=timezone, now=ctx.clock.now()
        )
        uow.commit()
        return owner.account_id


def add_tokens(ctx: Context, account_id: int, amount: int, *, key: str | None = None) -> None:
    """A manual, non-expiring grant: the simplest way to give a test account tokens."""
    with ctx.db.uow() as uow:
        account = accounts.get_account(uow.session, account_id=account_id)
        ledger.grant(
            uow.session,
            account_id=account_id,
            amount=amount,
            source=GrantSource.ADJUSTMENT,
            key=key or f"test:{amount}:{ctx.clock.now()}",
            period=periods.period_of(ctx.clock.now(), account.timezone),
            now=ctx.clock.now(),
        )
        uow.commit()


def balance_of(ctx: Context, account_id: int) -> Balance:
    with ctx.db.read() as session:
        balance = session.get(Balance, account_id)
        assert balance is not None
        return balance


def subscription_of(ctx: Context, account_id: int) -> Subscription:
    with ctx.db.read() as session:
        return subscriptions.get_subscription(session, account_id=account_id)


def spend(ctx: Context, account_id: int, tokens: int, key: str) -> None:
    """A chat turn that uses all it reserved."""
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        hold = ledger.reserve(
            uow.session, account_id=account_id, tokens=tokens, key=key, ttl_seconds=60, now=now
        )
        ledger.settle(
            uow.session,
            account_id=account_id,
            hold_id=hold.id,
            context=tokens,
            generation=0,
            now=now,
        )
        balance_notices.send_raised(uow.session, now=now)
        uow.commit()


def assert_ledger_clean(ctx: Context) -> None:
    """``chatmeter ledger verify`` finds nothing wrong with any account."""
    with ctx.db.read() as session:
        reports = verify(session)
    assert reports and all(r.ok for r in reports), [r.problems for r in reports]


@dataclass
class Caller:
    """An account calling the REST API with its own key."""

    account_id: int
    client: TestClient

    def new_assistant(self, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/assistants", json={"name": "Helper"} | fields)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def caller(ctx: Context, app_client: TestClient, email: str) -> Caller:
    """A new account and a client that sends its API key."""
    account_id = new_account(ctx, email=email)
    with ctx.db.uow() as uow:
        key = accounts.issue_api_key(uow.session, account_id=account_id, now=ctx.clock.now())
        uow.commit()
    headers = {"Authorization": f"Bearer {key}"}
    return Caller(account_id, TestClient(app_client.app, headers=headers))


@pytest.fixture
def app_client(ctx: Context) -> Iterator[TestClient]:
    """The real app on the test's context, in-process."""
    from chatmeter.web.app import create_app

    with TestClient(create_app(ctx)) as client:
        yield client


@pytest.fixture
def alice(ctx: Context, app_client: TestClient) -> Caller:
    return caller(ctx, app_client, "alice@example.com")


@pytest.fixture
def bob(ctx: Context, app_client: TestClient) -> Caller:
    return caller(ctx, app_client, "bob@example.com")
