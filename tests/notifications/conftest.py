"""Fixtures: an SMTP server on loopback, running or (until started) refusing connections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .smtp_server import SmtpServer


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stopped_smtp_server() -> Iterator[SmtpServer]:
    """A server whose port refuses connections until the test calls ``start()``."""
    server = SmtpServer()
    yield server
    server.stop()
