"""Fixtures for chat turns: the real model under a recorder, and an empty Redis database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatmeter.context import Context
from tests.chat.shop import Recording, install


@pytest.fixture
def model(ctx: Context) -> Recording:
    """The bundled model as ``ctx`` runs it, recording every generation it is asked for."""
    return install(ctx)


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    """The URL of this process's Redis database, emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()
    client.close()
