"""The panel in a browser-like client (see ``tests.support.panel``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.support.panel import Panel


@pytest.fixture
def panel(ctx: Context) -> Iterator[Panel]:
    with TestClient(create_app(ctx), base_url="http://127.0.0.1") as client:
        yield Panel(client)
