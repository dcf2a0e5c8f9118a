"""Browser journeys: the real app under uvicorn, a customer's website on another loopback
port, and Debian's Chromium driven by Playwright (see ``tests.support.browser``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, DOCS_SCREENSHOTS, Screenshots, Visit
from tests.support.live import LiveServer
from tests.support.website import Website


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    """A fresh visitor (own storage) at desktop size."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    visit = Visit(page, console)
    yield visit
    for close in visit.closing:
        close()
    context.close()


@pytest.fixture(scope="session")
def website() -> Iterator[Website]:
    site = Website()
    yield site
    site.close()


@pytest.fixture
def live(ctx: Context) -> Iterator[LiveServer]:
    """The app on ``ctx``'s database, answering on a loopback port."""
    with LiveServer(create_app(ctx)) as server:
        yield server


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Screenshots:
    """``docs/screenshots`` when asked for, from the SQLite run of a test only (one writer
    per picture); otherwise the test's temporary folder."""
    asked = request.config.getoption("screenshots") or (
        os.environ.get("CHATMETER_TEST_SCREENSHOTS") == "1"
    )
    callspec = getattr(request.node, "callspec", None)
    backend = callspec.params.get("db_url", "sqlite") if callspec else "sqlite"
    return Screenshots(DOCS_SCREENSHOTS if asked and backend == "sqlite" else tmp_path / "shots")
