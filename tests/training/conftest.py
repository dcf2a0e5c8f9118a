"""Two accounts, Alice and Bob, each calling the REST API with its own key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.assistants.callers import Caller, caller


@pytest.fixture
def app_client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as client:
        yield client


@pytest.fixture
def alice(ctx: Context, app_client: TestClient) -> Caller:
    return caller(ctx, app_client, "alice@example.com")


@pytest.fixture
def bob(ctx: Context, app_client: TestClient) -> Caller:
    return caller(ctx, app_client, "bob@example.com")
