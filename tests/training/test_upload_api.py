"""Training files through the REST API, from upload to a ready (or explained, failed) file.

Every format is trained from a real file written by the library that makes it;
every failure is explained to the customer and changes nothing else: no
chunks, the assistant's index version unchanged, the other files untouched.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatmeter.assistants import service as assistants
from chatmeter.context import Context
from chatmeter.retrieval.search import retrieve
from chatmeter.training import service as training
from chatmeter.training.models import Chunk, TrainingFile
from chatmeter.web.app import create_app
from tests.assistants.callers import chunk_rows, file_count, index_version
from tests.knowledge import files
from tests.support.api import Caller, caller

Upload = tuple[str, bytes]


def handbook_pdf() -> bytes:
    """Three pages; the first two open a bookmarked section, the third continues one."""
    return files.pdf(
        [
            [
                (
                    "Getting started",
                    [
                        "Create an account with your email address.",
                        "Every new account starts with an empty balance.",
                    ],
                )
            ],
            [
                (
                    "Billing",
                    [
                        "Tokens are bought in packages of fifty thousand.",
                        "Invoices are sent by email on the first of the month.",
                    ],
                )
            ],
            [(None, ["Unused tokens roll over to the next month."])],
        ],
        title="Handbook",
    )


MARKDOWN = b"""# Delivery

We ship to every country in the European Union.

## Costs

Shipping is free for orders over fifty euros.
"""
HTML = b"""<!doctype html>
<html><head><title>Returns</title><script>trackVisitor()</script></head>
<body><nav>Home | Shop | Cart</nav>
<h1>Returns</h1><p>You may return any item within thirty days.</p>
<h2>Refunds</h2><p>Refunds reach your card within five working days.</p>
</body></html>
"""
CSV = b"Plan,Tokens,Price\nStarter,50000,20 EUR\nPro,500000,150 EUR\n"
TEXT = b"Our shop opens at nine and closes at six.\n\nWe are closed on Sundays.\n"


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "Not a Word document.")
    return buffer.getvalue()


def upload(client: TestClient, assistant_id: int, *items: Upload) -> Any:
    return client.post(
        f"/api/v1/assistants/{assistant_id}/files",
        files=[("files", (name, data, "application/octet-stream")) for name, data in items],
    )


def status(client: TestClient, assistant_id: int, file_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/assistants/{assistant_id}/files/{file_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def headings(ctx: Context, file_id: int) -> list[str]:
    return [heading for _, _, _, heading, _ in chunk_rows(ctx, file_id=file_id)]


def chunk_tokens(ctx: Context, file_id: int) -> int:
    with ctx.db.read() as session:
        return session.scalar(select(func.sum(Chunk.tokens)).where(Chunk.file_id == file_id)) or 0


def stored_content(ctx: Context, file_id: int) -> bytes | None:
    with ctx.db.read() as session:
        file = session.get(TrainingFile, file_id)
        assert file is not None
        return b"".join(training.read_parts(session, file_id=file.id)) or None


@pytest.mark.model
def test_every_format_uploaded_at_once_is_trained(ctx: Context, alice: Caller) -> None:
    assistant = alice.new_assistant()["id"]
    response = upload(
        alice.client,
        assistant,
        ("handbook.pdf", handbook_pdf()),
        ("handbook.docx", files.word()),
        ("hours.txt", TEXT),
        ("delivery.md", MARKDOWN),
        ("returns.html", HTML),
        ("plans.csv", CSV),
    )
    assert response.status_code == 201, response.text
    queued = response.json()
    assert [(f["filename"], f["status"], f["duplicate"]) for f in queued] == [
        (name, "queued", False)
        for name in (
            "handbook.pdf",
            "handbook.docx",
            "hours.txt",
            "delivery.md",
            "returns.html",
            "plans.csv",
        )
    ]
    ids = {f["filename"]: f["id"] for f in queued}

    assert training.process_queue(ctx) == {"ready": 6, "failed": 0}

    expected = {
        "handbook.pdf": ("pdf", 3),
        "handbook.docx": ("docx", 1),
        "hours.txt": ("txt", 1),
        "delivery.md": ("markdown", 1),
        "returns.html": ("html", 1),
        "plans.csv": ("csv", 1),
    }
    for name, (format_, pages) in expected.items():
        shown = status(alice.client, assistant, ids[name])
        rows = chunk_rows(ctx, file_id=ids[name])
        assert (shown["status"], shown["progress"], shown["error"]) == ("ready", 100, None), name
        assert (shown["format"], shown["pages"]) == (format_, pages), name
        assert shown["chunks"] == len(rows) > 0, name
        assert shown["tokens"] == chunk_tokens(ctx, ids[name]) > 0, name
        assert stored_content(ctx, ids[name]) is None, name  # the upload is not kept
    assert index_version(ctx, assistant) == 6

    pdf_rows = chunk_rows(ctx, file_id=ids["handbook.pdf"])
    assert {page for _, _, page, _, _ in pdf_rows} == {1, 2, 3}
    assert [(page, heading) for _, _, page, heading, _ in pdf_rows] == [
        (1, "Getting started"),
        (2, "Billing"),
        (3, "Billing"),
    ]
    assert "Unused tokens roll over" in pdf_rows[2][4]

    docx_headings = headings(ctx, ids["handbook.docx"])
    assert "Billing › Packages" in docx_headings and "Support" in docx_headings
    docx_text = "\n".join(text for *_, text in chunk_rows(ctx, file_id=ids["handbook.docx"]))
    assert "One package holds 50,000 tokens." in docx_text
    assert "Plan: Starter; Tokens: 50,000" in docx_text

    assert headings(ctx, ids["delivery.md"]) == ["Delivery", "Delivery › Costs"]
    assert headings(ctx, ids["returns.html"]) == ["Returns", "Returns › Refunds"]
    html_text = "\n".join(text for *_, text in chunk_rows(ctx, file_id=ids["returns.html"]))
    assert "thirty days" in html_text
    assert "trackVisitor" not in html_text and "Cart" not in html_text
    csv_text = "\n".join(text for *_, text in chunk_rows(ctx, file_id=ids["plans.csv"]))
    assert "Plan: Starter; Tokens: 50000; Price: 20 EUR" in csv_text
    assert "closed on Sundays" in chunk_rows(ctx, file_id=ids["hours.txt"])[0][4]

    listed = alice.client.get(f"/api/v1/assistants/{assistant}/files").json()
    assert [f["id"] for f in listed] == list(ids.values())
    assert all(f["status"] == "ready" for f in listed)


@pytest.mark.model
def test_a_word_file_named_txt_is_trained_as_word(ctx: Context, alice: Caller) -> None:
    assistant = alice.new_assistant()["id"]
    file_id = upload(alice.client, assistant, ("handbook.txt", files.word())).json()[0]["id"]
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    shown = status(alice.client, assistant, file_id)
    assert (shown["status"], shown["format"], shown["filename"]) == (
        "ready",
        "docx",
        "handbook.txt",
    )
    assert "Billing › Packages" in headings(ctx, file_id)


# name, content, reason, words the explanation must contain
FAILURES: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("locked.pdf", lambda: files.encrypted_pdf(handbook_pdf()), "encrypted", "password"),
    ("scan.pdf", files.image_only_pdf, "no_text", "no text layer"),
    ("photo.pdf", files.png, "unsupported", "PNG image"),
    ("blank.txt", lambda: b" \n\t\n   \n", "empty", "empty"),
    ("header-only.csv", lambda: b"Plan,Tokens\n", "empty", "no rows"),
    (
        "bomb.docx",
        lambda: files.word_with_media(bytes(8 * 1024 * 1024)),
        "zip_bomb",
        "implausible size",
    ),
    (
        "claims-4gb.docx",
        lambda: files.declare_size(files.word(), "word/document.xml", 4_000_000_000),
        "zip_bomb",
        "would unpack to 4,000.8 MB",
    ),
    ("damaged.docx", lambda: files.word()[:3000], "corrupt", "damaged"),
    ("archive.zip", plain_zip, "unsupported", "zip archive"),
]


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "make", "reason", "words"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_a_file_that_cannot_be_learned_from_fails_explained_and_changes_nothing_else(
    ctx: Context, alice: Caller, name: str, make: Callable[[], bytes], reason: str, words: str
) -> None:
    assistant = alice.new_assistant()["id"]
    good = upload(alice.client, assistant, ("hours.txt", TEXT)).json()[0]["id"]
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    before = (
        index_version(ctx, assistant),
        chunk_rows(ctx, assistant_id=assistant),
        status(alice.client, assistant, good),
    )

    response = upload(alice.client, assistant, (name, make()))
    assert response.status_code == 201, response.text
    bad = response.json()[0]["id"]
    assert training.process_queue(ctx) == {"ready": 0, "failed": 1}

    shown = status(alice.client, assistant, bad)
    assert shown["status"] == "failed"
    assert shown["error"]["code"] == reason
    assert words.lower() in shown["error"]["message"].lower()
    assert (shown["chunks"], shown["tokens"]) == (0, 0)
    assert chunk_rows(ctx, file_id=bad) == []
    assert stored_content(ctx, bad) is None
    after = (
        index_version(ctx, assistant),
        chunk_rows(ctx, assistant_id=assistant),
        status(alice.client, assistant, good),
    )
    assert after == before


def test_an_empty_file_is_refused_at_upload_with_its_name(ctx: Context, alice: Caller) -> None:
    assistant = alice.new_assistant()["id"]
    response = upload(alice.client, assistant, ("hours.txt", TEXT), ("empty.txt", b""))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "empty.txt" in error["message"] and "empty" in error["message"].removeprefix("empty")
    assert file_count(ctx) == 0  # the whole request is refused, the good file too


@pytest.mark.parametrize("count", [0, 21])
def test_an_upload_needs_one_to_twenty_files(ctx: Context, alice: Caller, count: int) -> None:
    assistant = alice.new_assistant()["id"]
    items = [(f"note{i}.txt", f"Note number {i}.".encode()) for i in range(count)]
    response = (
        upload(alice.client, assistant, *items)
        if count
        else alice.client.post(f"/api/v1/assistants/{assistant}/files", data={"x": "1"})
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert file_count(ctx) == 0


def test_a_file_field_with_no_file_chosen_is_no_file(ctx: Context, alice: Caller) -> None:
    """What a browser sends for a file input left empty: a part with an empty file name."""
    assistant = alice.new_assistant()["id"]
    empty = upload(alice.client, assistant, ("", b""))
    assert empty.status_code == 422
    assert empty.json()["error"]["message"] == "choose 1 to 20 files to upload"
    fine = upload(alice.client, assistant, ("", b""), ("hours.txt", TEXT))
    assert fine.status_code == 201 and [f["filename"] for f in fine.json()] == ["hours.txt"]


@pytest.fixture
def small_limit(ctx: Context) -> Iterator[tuple[Context, Caller]]:
    """An app whose upload limit is 4,096 bytes a file."""
    small = Context(
        settings=ctx.settings.model_copy(update={"max_upload_bytes": 4096}),
        db=ctx.db,
        clock=ctx.clock,
        gateway=ctx.gateway,
    )
    with TestClient(create_app(small)) as client:
        yield small, caller(small, client, "carol@example.com")


def test_a_file_over_the_size_limit_is_refused_with_413(
    small_limit: tuple[Context, Caller],
) -> None:
    ctx, carol = small_limit
    assistant = carol.new_assistant()["id"]
    over = upload(carol.client, assistant, ("hours.txt", TEXT), ("big.txt", b"a " * 2049))
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "payload_too_large"
    assert "big.txt" in over.json()["error"]["message"]
    assert "4,096" in over.json()["error"]["message"]
    # Far over: refused by the body limit before the request is read.
    huge = upload(carol.client, assistant, ("huge.txt", b"a " * 100_000))
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"
    assert file_count(ctx) == 0
    at_limit = upload(carol.client, assistant, ("fits.txt", b"a " * 2048))
    assert at_limit.status_code == 201


@pytest.mark.model
def test_a_file_over_the_limit_when_processed_fails_explained(ctx: Context, alice: Caller) -> None:
    """The operator lowered the limit after the file was queued."""
    assistant = alice.new_assistant()["id"]
    file_id = upload(alice.client, assistant, ("notes.txt", b"word " * 1000)).json()[0]["id"]
    small = Context(
        settings=ctx.settings.model_copy(update={"max_upload_bytes": 1024}),
        db=ctx.db,
        clock=ctx.clock,
        gateway=ctx.gateway,
    )
    assert training.process_queue(small) == {"ready": 0, "failed": 1}
    shown = status(alice.client, assistant, file_id)
    assert (shown["status"], shown["error"]["code"]) == ("failed", "too_large")
    assert "limit" in shown["error"]["message"]
    assert index_version(ctx, assistant) == 0


@pytest.mark.model
def test_the_same_content_twice_is_recognised_whatever_its_name(
    ctx: Context, alice: Caller
) -> None:
    assistant = alice.new_assistant()["id"]
    first = upload(alice.client, assistant, ("hours.txt", TEXT))
    assert first.status_code == 201
    original = first.json()[0]
    again = upload(alice.client, assistant, ("opening-hours (copy).txt", TEXT))
    assert again.status_code == 200
    [duplicate] = again.json()
    assert duplicate["duplicate"] is True
    assert (duplicate["id"], duplicate["filename"], duplicate["sha256"]) == (
        original["id"],
        "hours.txt",
        original["sha256"],
    )
    assert file_count(ctx) == 1

    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    mixed = upload(
        alice.client,
        assistant,
        ("copy.txt", TEXT),
        ("delivery.md", MARKDOWN),
        ("delivery-again.md", MARKDOWN),
    )
    assert mixed.status_code == 201  # something new was queued
    body = mixed.json()
    assert [(f["duplicate"], f["status"]) for f in body] == [
        (True, "ready"),
        (False, "queued"),
        (True, "queued"),
    ]
    assert body[0]["id"] == original["id"] and body[1]["id"] == body[2]["id"]
    assert file_count(ctx) == 2
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    assert len(chunk_rows(ctx, assistant_id=assistant)) == 1 + len(
        chunk_rows(ctx, file_id=body[1]["id"])
    )


@pytest.mark.model
def test_the_same_content_for_another_assistant_is_a_new_file(ctx: Context, alice: Caller) -> None:
    first, second = alice.new_assistant()["id"], alice.new_assistant(name="Second")["id"]
    a = upload(alice.client, first, ("hours.txt", TEXT))
    b = upload(alice.client, second, ("hours.txt", TEXT))
    assert (a.status_code, b.status_code) == (201, 201)
    assert b.json()[0]["duplicate"] is False and b.json()[0]["id"] != a.json()[0]["id"]
    assert training.process_queue(ctx) == {"ready": 2, "failed": 0}


@pytest.mark.model
def test_a_file_that_failed_for_an_internal_reason_can_be_uploaded_again(
    ctx: Context, alice: Caller
) -> None:
    """The failure tells the customer to upload the file again; doing so must retrain it."""
    assistant = alice.new_assistant()["id"]
    file_id = upload(alice.client, assistant, ("hours.txt", TEXT)).json()[0]["id"]
    for _ in range(training.MAX_ATTEMPTS):  # the worker crashes on it every time
        assert training.claim_file(ctx, file_id=file_id)
        ctx.clock.advance(seconds=training.processing_lease(ctx.settings).total_seconds() + 1)
    training.process_queue(ctx)  # the fourth claim gives up on it
    failed = status(alice.client, assistant, file_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "internal"
    assert "upload the file again" in failed["error"]["message"]

    again = upload(alice.client, assistant, ("hours.txt", TEXT))
    [shown] = again.json()
    assert (again.status_code, shown["duplicate"], shown["status"]) == (201, False, "queued")
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    assert status(alice.client, assistant, again.json()[0]["id"])["status"] == "ready"


@pytest.mark.model
def test_deleting_a_file_removes_its_passages_from_answers_at_once(
    ctx: Context, alice: Caller
) -> None:
    assistant = alice.new_assistant()["id"]
    refunds = upload(alice.client, assistant, ("returns.html", HTML)).json()[0]["id"]
    hours = upload(alice.client, assistant, ("hours.txt", TEXT)).json()[0]["id"]
    assert training.process_queue(ctx) == {"ready": 2, "failed": 0}

    def sources(question: str) -> set[int]:
        with ctx.db.read() as session:
            return {
                p.file_id
                for p in retrieve(
                    session,
                    assistant_id=assistant,
                    question=question,
                    embedder=ctx.embedder,
                    vectors=ctx.vectors,
                    passages=3,
                    budget=400,
                )
            }

    assert refunds in sources("How long do refunds take?")  # the vector cache is warm now
    version = index_version(ctx, assistant)
    kept = chunk_rows(ctx, file_id=hours)

    response = alice.client.delete(f"/api/v1/assistants/{assistant}/files/{refunds}")
    assert response.status_code == 204
    assert chunk_rows(ctx, file_id=refunds) == []
    assert chunk_rows(ctx, file_id=hours) == kept
    assert index_version(ctx, assistant) == version + 1
    assert sources("How long do refunds take?") == {hours}
    gone = alice.client.get(f"/api/v1/assistants/{assistant}/files/{refunds}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert alice.client.delete(f"/api/v1/assistants/{assistant}/files/{refunds}").status_code == 404
    # The same content may now be uploaded again, as a new file.
    again = upload(alice.client, assistant, ("returns.html", HTML))
    assert again.status_code == 201 and again.json()[0]["duplicate"] is False


@pytest.mark.model
def test_a_file_deleted_while_queued_does_not_break_the_job(ctx: Context, alice: Caller) -> None:
    assistant = alice.new_assistant()["id"]
    doomed, kept = [
        f["id"]
        for f in upload(alice.client, assistant, ("hours.txt", TEXT), ("plans.csv", CSV)).json()
    ]
    assert alice.client.delete(f"/api/v1/assistants/{assistant}/files/{doomed}").status_code == 204
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    assert status(alice.client, assistant, kept)["status"] == "ready"
    assert chunk_rows(ctx, file_id=doomed) == []
    assert file_count(ctx) == 1


def test_two_uploads_of_the_same_content_at_the_same_moment_make_one_file(
    ctx: Context, alice: Caller
) -> None:
    """A double-clicked upload button: the second request must see the first, not crash."""
    assistant_id = alice.new_assistant()["id"]
    first_flushed, first_may_commit = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def upload_in_transaction(label: str, *, hold: bool) -> None:
        try:
            with ctx.db.uow() as uow:
                assistant = assistants.get_assistant(
                    uow.session, account_id=alice.account_id, assistant_id=assistant_id
                )
                done = training.upload(
                    uow.session,
                    assistant=assistant,
                    filename=f"{label}.txt",
                    data=TEXT,
                    max_bytes=ctx.settings.max_upload_bytes,
                    now=ctx.clock.now(),
                )
                if hold:
                    first_flushed.set()
                    first_may_commit.wait(timeout=30)
                uow.commit()
                results[label] = (done.file.id, done.duplicate)
        except Exception as exc:
            results[label] = exc

    first = threading.Thread(target=upload_in_transaction, args=("first",), kwargs={"hold": True})
    first.start()
    assert first_flushed.wait(timeout=30)
    second = threading.Thread(
        target=upload_in_transaction, args=("second",), kwargs={"hold": False}
    )
    second.start()
    second.join(timeout=1)  # it waits on the first transaction (row or database lock)
    first_may_commit.set()
    first.join(timeout=30)
    second.join(timeout=30)
    first_id, first_duplicate = results["first"]
    assert not first_duplicate
    assert results["second"] == (first_id, True)
    assert file_count(ctx) == 1
