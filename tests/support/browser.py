"""Debian's Chromium driven by Playwright: a visit's tab, and where its pictures go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The README's pictures: rewritten only when asked for (``--screenshots``).
DOCS_SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


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


@dataclass
class Screenshots:
    """Where a browser test's pictures go: ``docs/screenshots`` when the run was asked for
    them (``pytest --screenshots`` or ``CHATMETER_TEST_SCREENSHOTS=1``), else the test's own
    temporary folder, so that an ordinary run leaves the tracked pictures alone."""

    folder: Path

    def take(self, page: Page, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        page.screenshot(path=str(path))
        return path
