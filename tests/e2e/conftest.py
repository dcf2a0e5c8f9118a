"""Browser journeys: the real app under uvicorn, a customer's website on another loopback
port, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.support.live import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


@dataclass
class Website:
    """A customer's website on its own loopback port: path → HTML."""

    pages: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.domain = f"127.0.0.1:{self.port}"  # as a customer lists it in allowed_domains
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, path: str, page: str) -> str:
        self.pages[path] = page
        return self.origin + path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def embed(api: str, public_key: str) -> str:
    """The one tag a customer puts on their site."""
    src = html.escape(f"{api}/widget.js")
    return f'<script src="{src}" data-assistant="{html.escape(public_key)}" async></script>'


@dataclass
class Visit:
    """A browser tab, with everything the page logged."""

    page: Page
    console: list[str]
    closing: list[Any] = field(default_factory=list)  # called when the visit ends

    def text_anywhere(self) -> str:
        """What a visitor can read: the page's text and any shadow root's."""
        return str(
            self.page.evaluate(
                """() => [document.body.innerText,
                    ...[...document.querySelectorAll('*')]
                      .filter((e) => e.shadowRoot)
                      .map((e) => e.shadowRoot.textContent)].join('\\n')"""
            )
        )


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
