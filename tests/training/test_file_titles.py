"""A training file's title as visitors see it: found by training, set by its customer in the
API, the CLI and the panel, and never another account's to read or change."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chatmeter.context import Context
from chatmeter.training import service as training
from chatmeter.training.models import TrainingFile
from tests.support.api import Caller
from tests.training.test_upload_api import HTML, MARKDOWN, TEXT, upload

pytestmark = pytest.mark.model  # trains with the embedder


def trained(ctx: Context, caller: Caller) -> tuple[int, dict[str, int]]:
    assistant = caller.new_assistant()["id"]
    queued = upload(
        caller.client,
        assistant,
        ("delivery-notes.md", MARKDOWN),
        ("returns_v3.html", HTML),
        ("opening-hours.txt", TEXT),
    ).json()
    assert training.process_queue(ctx) == {"ready": 3, "failed": 0}
    return assistant, {f["filename"]: f["id"] for f in queued}


def test_training_finds_each_documents_own_title(ctx: Context, alice: Caller) -> None:
    assistant, _ = trained(ctx, alice)

    listed = alice.client.get(f"/api/v1/assistants/{assistant}/files").json()

    # A Markdown heading, an HTML <title>; a text file states none: its name, readable.
    assert {f["filename"]: (f["title"], f["source_title"]) for f in listed} == {
        "delivery-notes.md": ("", "Delivery"),
        "returns_v3.html": ("", "Returns"),
        "opening-hours.txt": ("", "Opening hours"),
    }


def test_the_customer_names_a_file_and_can_give_the_documents_title_back(
    ctx: Context, alice: Caller
) -> None:
    assistant, ids = trained(ctx, alice)
    url = f"/api/v1/assistants/{assistant}/files/{ids['returns_v3.html']}"

    named = alice.client.patch(url, json={"title": "  Returns   and refunds "})
    assert named.status_code == 200, named.text
    assert (named.json()["title"], named.json()["source_title"]) == (
        "Returns and refunds",
        "Returns and refunds",
    )
    cleared = alice.client.patch(url, json={"title": ""})
    assert (cleared.json()["title"], cleared.json()["source_title"]) == ("", "Returns")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"title": "x" * 201}, 422),
        ({"title": "a\u0000b"}, 422),
        ({"title": 5}, 422),
        ({}, 422),
        ({"title": "ok", "more": 1}, 422),
    ],
)
def test_a_bad_title_is_refused_with_a_reason_and_changes_nothing(
    ctx: Context, alice: Caller, body: dict[str, object], status: int
) -> None:
    assistant, ids = trained(ctx, alice)
    url = f"/api/v1/assistants/{assistant}/files/{ids['delivery-notes.md']}"

    refused = alice.client.patch(url, json=body)

    assert refused.status_code == status
    assert refused.json()["error"]["message"]
    with ctx.db.read() as session:
        titles = session.scalars(select(TrainingFile.title)).all()
    assert set(titles) == {""}


def test_another_accounts_file_cannot_be_named(ctx: Context, alice: Caller, bob: Caller) -> None:
    assistant, ids = trained(ctx, alice)
    bobs = bob.new_assistant()["id"]
    file_id = ids["delivery-notes.md"]

    for url in (
        f"/api/v1/assistants/{assistant}/files/{file_id}",  # alice's assistant
        f"/api/v1/assistants/{bobs}/files/{file_id}",  # bob's assistant, alice's file
    ):
        refused = bob.client.patch(url, json={"title": "Mine now"})
        assert refused.status_code == 404, url
    with ctx.db.read() as session:
        assert session.get(TrainingFile, file_id).title == ""  # type: ignore[union-attr]
