"""Fixtures for chat turns: the app a visitor talks to, and the real model under a recorder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.chat.shop import Recording, install

# A Redis database of the tests' own, flushed around each test that uses it.
REDIS_URL = os.environ.get("CHATMETER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def visitor(ctx: Context) -> Iterator[TestClient]:
    """A visitor's browser (no API key) talking to the app on ``ctx``."""
    with TestClient(create_app(ctx)) as client:
        yield client


@pytest.fixture
def model(ctx: Context) -> Recording:
    """The bundled model as ``ctx`` runs it, recording every generation it is asked for."""
    return install(ctx)


@pytest.fixture
def redis_db() -> Iterator[str]:
    """The URL of an empty Redis database, emptied again after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        client.close()
        if os.environ.get("CHATMETER_TEST_REQUIRE_REDIS") == "1":  # CI: never skip
            pytest.fail(f"Redis is required but unavailable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis unavailable at {REDIS_URL}: {exc}")
    yield REDIS_URL
    client.flushdb()
    client.close()
