"""Driving the widget the way a visitor does, and reading what it shows."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Locator, Page, Request, Response, expect

from chatmeter.context import Context
from chatmeter.training import service as training
from tests.chat.shop import Shop
from tests.support.website import embed

HOST = "chatmeter-widget"
# A model answer on this shared machine takes seconds per token.
ANSWER_TIMEOUT = 180_000
# What a visitor must never read when an assistant is hidden: the customer's money.
MONEY = re.compile(r"token|balance|credit|quota|billing|payment|purchase|subscription|insuffic")


def page_with_widget(template: str, *, api: str, shop: Shop) -> str:
    return template.replace("{embed}", embed(api, shop.public_key))


def load(page: Page, url: str) -> int | str:
    """Open ``url`` and return what came of the widget's settings request (a status, or
    the browser's error when it refused to read the answer) once the script has had its
    chance to draw."""
    outcomes: list[int | str] = []

    def is_settings(url: str) -> bool:
        return urlsplit(url).path.endswith("/widget")  # asked with ?lang=

    def answered(response: Response) -> None:
        if is_settings(response.url):
            outcomes.append(response.status)

    def failed(request: Request) -> None:
        if is_settings(request.url):
            outcomes.append(request.failure or "failed")

    page.on("response", answered)
    page.on("requestfailed", failed)
    try:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 150))")  # to draw
    finally:
        page.remove_listener("response", answered)
        page.remove_listener("requestfailed", failed)
    assert outcomes, "the widget did not ask for its settings"
    return outcomes[0]  # a response's body may still be "aborted" after it: unread


def has_widget(page: Page) -> bool:
    """Whether the script added anything at all to the page."""
    return bool(
        page.evaluate(
            """() => document.querySelector('chatmeter-widget') !== null
                || [...document.querySelectorAll('*')].some((e) => e.shadowRoot)"""
        )
    )


def mentions_money(text: str) -> list[str]:
    return MONEY.findall(text.lower())


class Widget:
    """Locators into the widget's shadow root (Playwright's selectors pierce open ones)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.launcher = page.locator(f"{HOST} .launcher")
        self.panel = page.get_by_role("dialog")
        self.input = page.locator(f"{HOST} textarea")
        self.send = page.locator(f"{HOST} .send")
        self.messages = page.locator(f"{HOST} .msg")
        self.answers = page.locator(f"{HOST} .msg.bot:not(.notice) .bubble")
        self.notices = page.locator(f"{HOST} .msg.notice .bubble")
        self.sources = page.locator(f"{HOST} .source .name")
        self.cut_off = page.locator(f"{HOST} .msg .cut")  # "This answer was cut short."
        self.cited_answers = page.locator(f"{HOST} .msg.bot:has(.sources)")

    def open(self) -> None:
        """Open the panel, unless it came back open from the last page load."""
        if self.launcher.get_attribute("aria-expanded") != "true":
            self.launcher.click()
        expect(self.panel).to_be_visible()

    def ask(self, question: str) -> None:
        self.input.fill(question)
        self.input.press("Enter")

    def last_answer(self) -> Locator:
        return self.answers.last

    def record_answer_updates(self) -> None:
        """Remember the text of the newest answer bubble after every change to the log."""
        self.page.evaluate(
            """() => {
              const root = document.querySelector('chatmeter-widget').shadowRoot;
              const log = root.querySelector('.log');
              window.__answerTexts = [];
              new MutationObserver(() => {
                const bubbles = log.querySelectorAll('.msg.bot:not(.notice) .bubble');
                const text = bubbles.length ? bubbles[bubbles.length - 1].textContent : '';
                window.__answerTexts.push(text);
              }).observe(log, {subtree: true, childList: true, characterData: true});
            }"""
        )

    def answer_updates(self) -> list[str]:
        return list(self.page.evaluate("() => window.__answerTexts"))

    def history(self, public_key: str) -> list[dict[str, Any]]:
        """The conversation as the widget keeps it between page loads (texts as they came)."""
        stored = self.page.evaluate(
            "(key) => JSON.parse(localStorage.getItem(key) || '{}')", f"chatmeter:{public_key}"
        )
        return list(stored.get("messages", []))

    def shadow_text(self) -> str:
        return str(
            self.page.evaluate(f"() => document.querySelector('{HOST}').shadowRoot.textContent")
        )

    def count(self, selector: str) -> int:
        """How many elements inside the shadow root match ``selector``."""
        return int(
            self.page.evaluate(
                f"(s) => document.querySelector('{HOST}').shadowRoot.querySelectorAll(s).length",
                selector,
            )
        )

    def style(self, selector: str, properties: list[str]) -> dict[str, Any]:
        """Computed styles of one element inside the shadow root."""
        return dict(
            self.page.evaluate(
                f"""([selector, properties]) => {{
                  const node = document.querySelector('{HOST}').shadowRoot.querySelector(selector);
                  const style = getComputedStyle(node);
                  return Object.fromEntries(properties.map((p) => [p, style.getPropertyValue(p)]));
                }}""",
                [selector, properties],
            )
        )


def train(ctx: Context, shop: Shop, documents: dict[str, str]) -> None:
    """Upload ``documents`` to the shop's assistant and train on them."""
    from chatmeter.assistants import service as assistants

    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=shop.account_id, assistant_id=shop.assistant_id
        )
        for filename, text in documents.items():
            training.upload(
                uow.session,
                assistant=assistant,
                filename=filename,
                data=text.encode(),
                max_bytes=ctx.settings.max_upload_bytes,
                now=ctx.clock.now(),
            )
        uow.commit()
    assert training.process_queue(ctx) == {"ready": len(documents), "failed": 0}
