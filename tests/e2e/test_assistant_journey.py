"""Journey 1 in Chromium: sign up, create an assistant, upload a PDF and a DOCX at once,
watch both reach "ready" while the in-process worker trains them, and ask the test chat:
the answer streams in and cites a file. Also: bad files explained on the page, the
assistants pages at phone width, and the training page's screenshot."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from chatmeter.accounts.models import User
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing import purchases
from chatmeter.context import Context
from chatmeter.training import service as training
from chatmeter.web.app import create_app
from tests.e2e.driver import ANSWER_TIMEOUT
from tests.knowledge import files
from tests.support.browser import Screenshots, Visit
from tests.support.live import LiveServer

PASSWORD = "a long enough password"
TRAINING_TIMEOUT = 120_000  # the worker loads the embedding model on its first file
QUESTION = "How long does delivery take?"


def delivery_pdf() -> bytes:
    return files.pdf(
        [
            [
                (
                    "Delivery",
                    [
                        "Orders placed before 2 pm are roasted and shipped the same day.",
                        "Delivery within the UK takes one to two working days.",
                        "Delivery is free for orders over 30 pounds.",
                    ],
                )
            ],
            [("Returns", ["Unopened bags can be returned within 30 days for a full refund."])],
        ],
        title="Delivery and returns",
    )


def cafe_docx() -> bytes:
    import io

    import docx

    document = docx.Document()
    document.add_heading("The café", level=1)
    document.add_paragraph("The café at the roastery is open Monday to Friday, 8:00 to 18:00.")
    document.add_heading("Brewing classes", level=2)
    document.add_paragraph("Brewing classes run on Saturday mornings and cost 25 pounds.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def payload(name: str, data: bytes, mime: str = "application/octet-stream") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


@pytest.fixture
def live_worker(ctx: Context) -> Iterator[LiveServer]:
    """The app with its in-process worker, which trains uploaded files as the product does."""
    with LiveServer(create_app(ctx, run_worker=True)) as server:
        yield server


def sign_up(page: Page, live: LiveServer, email: str) -> None:
    page.goto(f"{live.url}/panel/sign-up")
    page.get_by_label("Business name").fill("Northwind Coffee")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/panel/dashboard$"))


def file_row(page: Page, name: str) -> Any:
    return page.locator("[data-file-row]").filter(has=page.get_by_title(name, exact=True))


def record_statuses(page: Page) -> None:
    """Remember every status each file row showed, to see the progress happen."""
    # The training page must have replaced the one the click left: observing too early
    # finds no list (or the old page's document).
    expect(page).to_have_url(re.compile(r"/panel/assistants/\d+/training$"))
    expect(page.locator("[data-file-list]")).to_be_attached()
    page.evaluate(
        """() => {
          window.__statuses = {};
          const note = () => document.querySelectorAll('[data-file-row]').forEach((row) => {
            const name = row.querySelector('[data-name]').textContent;
            const seen = (window.__statuses[name] ||= []);
            const status = row.querySelector('[data-status]').textContent;
            if (status && seen[seen.length - 1] !== status) seen.push(status);
          });
          new MutationObserver(note).observe(document.querySelector('[data-file-list]'),
            {subtree: true, childList: true, characterData: true});
        }"""
    )


def record_answer(page: Page) -> None:
    page.evaluate(
        """() => {
          window.__answers = [];
          const log = document.querySelector('[data-chat-log]');
          new MutationObserver(() => {
            const bubbles = log.querySelectorAll('.msg-bot .bubble');
            window.__answers.push(bubbles.length ? bubbles[bubbles.length - 1].textContent : '');
          }).observe(log, {subtree: true, childList: true, characterData: true});
        }"""
    )


def test_journey_1_train_on_a_pdf_and_a_docx_and_ask_the_test_chat(
    ctx: Context, live_worker: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live_worker, "owner@northwind.example")

    page.get_by_role("link", name="Assistants").click()
    page.get_by_role("link", name="New assistant").first.click()
    page.get_by_label("Name", exact=True).fill("Northwind Help")
    page.get_by_role("button", name="Create assistant").click()
    expect(page).to_have_url(re.compile(r"/panel/assistants/\d+/training\?done=created$"))

    # Short, steady answers: the settings form saves the longest answer and creativity.
    page.locator(".tabs").get_by_role("link", name="Settings").click()
    page.get_by_label("Longest answer").fill("24")
    page.get_by_label("Creativity").fill("0")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Your changes are saved.")

    page.get_by_role("link", name="Training").click()
    record_statuses(page)
    page.locator("[data-file-input]").set_input_files(
        [
            payload("delivery.pdf", delivery_pdf(), "application/pdf"),
            payload("cafe.docx", cafe_docx()),
        ]
    )
    for name in ("delivery.pdf", "cafe.docx"):
        expect(file_row(page, name).locator("[data-status]")).to_have_text(
            "Ready", timeout=TRAINING_TIMEOUT
        )
        expect(file_row(page, name).locator("[data-meta]")).to_contain_text("passage")
    seen = page.evaluate("() => window.__statuses")
    for name in ("delivery.pdf", "cafe.docx"):
        assert seen[name][-1] == "Ready" and len(seen[name]) >= 2, seen  # progress was shown
    expect(page.locator("[data-training-summary]")).to_have_text("2 ready")

    page.get_by_role("link", name="Test chat").click()
    chat = page.get_by_label("Your question")
    chat.fill(QUESTION)
    chat.press("Enter")
    # A new account has no tokens: the panel says so and offers more.
    out = page.get_by_role("alert").filter(has_text="Your account has no tokens yet")
    expect(out).to_be_visible()
    out.get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    window.get_by_role("button", name=re.compile("Confirm and pay")).click()
    expect(window.get_by_role("status")).to_contain_text("5,000 tokens added")
    window.get_by_role("button", name="Done").click()

    record_answer(page)
    expect(chat).to_have_value(QUESTION)  # the refused question waits in the box
    page.get_by_role("button", name="Send").click()
    sources = page.locator(".msg-bot .source-name")
    expect(sources.first).to_be_visible(timeout=ANSWER_TIMEOUT)
    # Named as visitors see them (the documents' titles), the file's name on hover.
    cited = page.locator(
        '.msg-bot .source-name[title="delivery.pdf"], .msg-bot .source-name[title="cafe.docx"]'
    )
    expect(cited.first).to_be_visible()
    expect(cited.first).not_to_have_text(re.compile(r"\.(pdf|docx)$"))
    answer = page.locator(".msg-bot .bubble").last.text_content() or ""
    updates = [text for text in dict.fromkeys(page.evaluate("() => window.__answers")) if text]
    assert answer.strip() and len(updates) >= 2, f"the answer arrived in one piece: {updates}"
    assert all(answer.startswith(text) for text in updates), "each update extends the answer"
    figures = page.locator("[data-answer-figures]").last
    expect(figures).to_contain_text(re.compile(r"Context \d+.*Response \d+.*Total \d+ tokens"))
    total = int(re.findall(r"Total (\d[\d,]*)", figures.inner_text())[0].replace(",", ""))
    expect(page.locator(".tokens-box [data-figure='balance']")).to_have_text(f"{5_000 - total:,}")

    page.get_by_role("link", name="Conversations").click()
    expect(page.locator("table.conversations")).to_contain_text(QUESTION)
    expect(page.locator("table.conversations .tag")).to_have_text("Test")
    refusal = "status of 402"  # the browser logs the out-of-tokens answer; nothing else failed
    errors = [m for m in visit.console if m.startswith(("error", "pageerror"))]
    assert [m for m in errors if refusal not in m] == []


def owner_account(ctx: Context, email: str) -> int:
    with ctx.db.read() as session:
        account_id = session.scalar(select(User.account_id).where(User.email == email))
    assert account_id is not None
    return account_id


def drop(page: Page, name: str, data: bytes) -> None:
    """Drop a file on the drop zone the way a browser does after a drag from the desktop."""
    page.locator("[data-dropzone]").evaluate(
        """(zone, [name, bytes]) => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([new Uint8Array(bytes)], name));
          for (const type of ['dragenter', 'dragover', 'drop']) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true,
                                                    cancelable: true}));
          }
        }""",
        [name, list(data)],
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_files_are_explained_and_the_pages_fit_a_phone(
    ctx: Context, live: LiveServer, visit: Visit, screenshots: Screenshots
) -> None:
    page = visit.page
    sign_up(page, live, "files@northwind.example")
    account_id = owner_account(ctx, "files@northwind.example")
    with ctx.db.uow() as uow:
        now = ctx.clock.now()
        assistant = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            now=now,
            fields=AssistantFields(name="Northwind Help", widget_color="#0f766e"),
        )
        for name, data in [
            ("delivery-and-returns.pdf", delivery_pdf()),
            ("cafe-and-classes.docx", cafe_docx()),
            ("brewing-guide.md", b"# Brewing guide\n\nUse 60 g of coffee per litre of water.\n"),
        ]:
            training.upload(
                uow.session, assistant=assistant, filename=name, data=data, max_bytes=10**7, now=now
            )
        assistant_id = assistant.id
        uow.commit()
    assert training.process_queue(ctx) == {"ready": 3, "failed": 0}
    base = f"{live.url}/panel/assistants/{assistant_id}"
    page.goto(f"{base}/training")
    expect(page.locator("[data-status]")).to_have_text(["Ready"] * 3)

    drop(page, "price-list.pdf", b"")
    empty = file_row(page, "price-list.pdf")
    expect(empty.locator("[data-status]")).to_have_text("Failed")
    expect(empty.locator("[data-error]")).to_have_text("Price-list.pdf is empty.")
    drop(page, "scanned-menu.pdf", files.image_only_pdf())
    scanned = file_row(page, "scanned-menu.pdf")
    expect(scanned.locator("[data-status]")).to_have_text(re.compile("Queued|Training"))
    assert training.process_queue(ctx) == {"ready": 0, "failed": 1}
    expect(scanned.locator("[data-status]")).to_have_text("Failed")
    expect(scanned.locator("[data-error]")).to_contain_text("This PDF has no text layer")
    drop(page, "setup.exe", b"MZ\x90\x00" + bytes(300))
    expect(file_row(page, "setup.exe").locator("[data-status]")).to_have_text(re.compile("Queued"))
    assert training.process_queue(ctx) == {"ready": 0, "failed": 1}
    expect(file_row(page, "setup.exe").locator("[data-error]")).to_contain_text(
        "can't be used for training"
    )
    file_row(page, "setup.exe").get_by_role("button", name="Remove setup.exe").click()
    expect(page.get_by_role("status").filter(has_text="The file is removed")).to_be_visible()

    # What the customer finds later: three ready files and one explained failure.
    purchases.purchase(ctx, account_id=account_id, packages=4, key="screenshot:training")
    page.goto(f"{base}/training")
    expect(page.locator("[data-file-row]")).to_have_count(4)
    screenshots.take(page, "training.png")

    page.set_viewport_size({"width": 390, "height": 844})
    for path in ["", "/training", "/test", "/embed", "/conversations", "/delete", "/rotate-key"]:
        page.goto(f"{base}{path}")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, path
    for path in ["/panel/assistants", "/panel/assistants/new"]:
        page.goto(f"{live.url}{path}")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, path
    assert [m for m in visit.console if m.startswith("pageerror")] == []
