"""Shared fixtures and the suite's tiers.

Fixtures: a clock, settings, a database on SQLite or PostgreSQL, Redis, the app, and
the bundled model's OpenAI-compatible server. Helpers live in ``tests.support``.

Tiers: every test that needs PostgreSQL, Redis, the bundled model (LLM or embedder)
or the browser carries the marker of the same name, so that ``make test-fast`` can
leave them out (``-m "not (postgres or redis or model or browser or slow)"``). The
markers follow from the fixtures a test uses (``MARKED_BY_FIXTURE``) and its directory
(``MARKED_BY_DIRECTORY``); tests that reach the model through the chat or training pipeline
without a fixture say ``@pytest.mark.model`` themselves, and a test that loads the
model without the marker fails (``tests.support.tiers``).

PostgreSQL tests need ``CHATMETER_TEST_POSTGRES_URL``, Redis tests
``CHATMETER_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/14``); without the
server they skip, unless ``CHATMETER_TEST_REQUIRE_POSTGRES=1`` or
``CHATMETER_TEST_REQUIRE_REDIS=1`` (set by CI), which turns the skip into a failure.
Under pytest-xdist each worker has a PostgreSQL database and a Redis database of its
own: the URL's database for the first worker, the next ones for the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from chatmeter import models
from chatmeter.billing.gateways import ManualGateway
from chatmeter.clock import FixedClock
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.db import Database, normalise_url
from tests.support import tiers
from tests.support.api import Caller, caller
from tests.support.context import START
from tests.support.fake_stripe import FakeStripe
from tests.support.llm import llama_cpp_server
from tests.support.payments import with_stripe

TESTS = Path(__file__).parent
# fixture → the marker of every test that uses it, directly or through another fixture
MARKED_BY_FIXTURE = {
    "postgres_url": "postgres",
    "redis_url": "redis",
    "local": "model",
    "embedder": "model",
    "model": "model",
    "llama_server": "model",
    "browser": "browser",
}
# The browser journeys run the whole product, training and chat included.
MARKED_BY_DIRECTORY = {"e2e": ("browser", "model")}
# Tests that share something costly run on one xdist worker: one Chromium, one server.
GROUPED_BY_FIXTURE = {"browser": "browser", "llama_server": "llama-server"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        action="store_true",
        help="browser tests rewrite docs/screenshots (also CHATMETER_TEST_SCREENSHOTS=1)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        directory = item.path.relative_to(TESTS).parts[0]
        for marker in MARKED_BY_DIRECTORY.get(directory, ()):
            item.add_marker(marker)
        for fixture, marker in MARKED_BY_FIXTURE.items():
            if fixture in used:
                item.add_marker(marker)
        for fixture, group in GROUPED_BY_FIXTURE.items():
            if fixture in used:
                item.add_marker(pytest.mark.xdist_group(group))
                break


def pytest_configure(config: pytest.Config) -> None:
    tiers.guard_model_loading()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    tiers.expect_model(item.get_closest_marker("model") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    loads = tiers.unmarked_loads()
    tiers.expect_model(True)  # between tests: session fixtures tear down, threads end
    if loads:
        pytest.fail(f"{item.nodeid} loads {' and '.join(loads)}: mark it @pytest.mark.model")


# --- databases ------------------------------------------------------------------------


def postgres_admin_url() -> str | None:
    url = os.environ.get("CHATMETER_TEST_POSTGRES_URL")
    return normalise_url(url) if url else None


def _unavailable(service: str, variable: str, reason: str) -> None:
    if os.environ.get(f"CHATMETER_TEST_REQUIRE_{variable}") == "1":  # CI: never skip
        pytest.fail(f"{service} is required but unavailable: {reason}")
    pytest.skip(f"{service} unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    """A database of this test process's own, created once and dropped at the end."""
    admin = postgres_admin_url()
    if admin is None:
        _unavailable("PostgreSQL", "POSTGRES", "CHATMETER_TEST_POSTGRES_URL is not set")
    name = f"chatmeter_test_{worker_id}_{os.getpid()}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # connection refused, auth...
        engine.dispose()
        _unavailable("PostgreSQL", "POSTGRES", str(exc).splitlines()[0])
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


@pytest.fixture(scope="session")
def redis_url(worker_id: str) -> str:
    """The URL of this test process's own Redis database, which it may empty at will."""
    import redis

    url = urlsplit(os.environ.get("CHATMETER_TEST_REDIS_URL", "redis://127.0.0.1:6379/14"))
    worker = int(worker_id.removeprefix("gw")) if worker_id.startswith("gw") else 0
    index = int(url.path.strip("/") or 0) + worker
    if index > 15:
        pytest.fail(f"no Redis database {index} for worker {worker_id}: lower the URL's")
    own = urlunsplit(url._replace(path=f"/{index}"))
    client = redis.Redis.from_url(own)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        _unavailable("Redis", "REDIS", f"{own}: {exc}")
    finally:
        client.close()
    return own


# --- the app ---------------------------------------------------------------------------


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


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    """Stripe's API on loopback (``tests.support.fake_stripe``), for one test."""
    with FakeStripe() as server:
        yield server


@pytest.fixture
def stripe_ctx(ctx: Context, fake: FakeStripe) -> Context:
    """The test's context with ``CHATMETER_PAYMENT_GATEWAY=stripe``, on the fake."""
    return with_stripe(ctx, fake)


@pytest.fixture
def stripe_app(stripe_ctx: Context) -> Iterator[TestClient]:
    """The real app on ``stripe_ctx``, in-process."""
    from chatmeter.web.app import create_app

    with TestClient(create_app(stripe_ctx)) as client:
        yield client


@pytest.fixture
def app_client(ctx: Context) -> Iterator[TestClient]:
    """The real app on the test's context, in-process."""
    from chatmeter.web.app import create_app

    with TestClient(create_app(ctx)) as client:
        yield client


@pytest.fixture
def visitor(ctx: Context) -> Iterator[TestClient]:
    """A visitor's browser (no API key) talking to the app on ``ctx``."""
    from chatmeter.web.app import create_app

    with TestClient(create_app(ctx)) as client:
        yield client


@pytest.fixture
def alice(ctx: Context, app_client: TestClient) -> Caller:
    return caller(ctx, app_client, "alice@example.com")


@pytest.fixture
def bob(ctx: Context, app_client: TestClient) -> Caller:
    return caller(ctx, app_client, "bob@example.com")


# --- the bundled model behind llama.cpp's OpenAI-compatible server -------------------


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    from chatmeter.llm.local import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving the bundled model; yields its /v1 URL."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with llama_cpp_server(gguf_path, log) as base_url:
        yield base_url
