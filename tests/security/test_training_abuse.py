"""Training cannot exhaust the server (issue #8, item 5), tried as a customer with bad
intent would, through the REST API.

Hostile files fail with their reason, in a process that is not the server's,
and the next file is trained; an account cannot keep more files, bytes or
passages than the operator allows, however it sends them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.training import sandbox
from chatmeter.training import service as training
from chatmeter.web.app import create_app
from tests.assistants.callers import file_count
from tests.knowledge import files
from tests.support.api import Caller, caller
from tests.support.context import derived
from tests.training.test_job import long_text, note

LIMITS = {
    "training_max_pages": 3,
    "training_max_chunks": 20,
    "quota_files": 8,
    "quota_file_bytes": 2_000_000,
    "quota_passages": 30,
}


@pytest.fixture
def mallory(ctx: Context) -> Iterator[tuple[Context, Caller]]:
    strict = derived(ctx, **LIMITS)
    with TestClient(create_app(strict)) as client:
        yield strict, caller(strict, client, "mallory@example.com")


def upload(client: TestClient, assistant_id: int, *items: tuple[str, bytes]):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/assistants/{assistant_id}/files",
        files=[("files", (name, data, "application/octet-stream")) for name, data in items],
    )


@pytest.mark.model
def test_hostile_files_fail_explained_outside_the_server_and_the_next_is_trained(
    mallory: tuple[Context, Caller],
) -> None:
    ctx, attacker = mallory
    assistant = attacker.new_assistant()["id"]
    # 1 MB that claims 100 MB unpacked: a ratio that alone passes, a size that does not.
    bomb = files.declare_size(
        files.word_with_media(os.urandom(1024 * 1024)), "word/media/blob.bin", 100_000_000
    )
    pages = files.pdf([[(None, [f"Page {n}."])] for n in range(4)])
    sent = upload(
        attacker.client,
        assistant,
        ("bomb.docx", bomb),
        ("pages.pdf", pages),
        ("passages.txt", long_text(21)),
        ("fine.txt", note(1)),
    )
    assert sent.status_code == 201, sent.text
    ids = {f["filename"]: f["id"] for f in sent.json()}
    assert training.process_queue(ctx) == {"ready": 1, "failed": 3}
    shown = {
        name: attacker.client.get(f"/api/v1/assistants/{assistant}/files/{file_id}").json()
        for name, file_id in ids.items()
    }
    assert shown["bomb.docx"]["error"]["code"] == "zip_bomb"
    assert "the limit is 67.1 MB" in shown["bomb.docx"]["error"]["message"]
    assert shown["pages.pdf"]["error"]["code"] == "too_large"
    assert "4 pages; the limit is 3 pages" in shown["pages.pdf"]["error"]["message"]
    assert shown["passages.txt"]["error"]["code"] == "too_large"
    assert "more than 20 passages" in shown["passages.txt"]["error"]["message"]
    assert shown["fine.txt"]["status"] == "ready"
    assert sandbox.shared(ctx.settings).pid not in (None, os.getpid())  # read elsewhere


def test_an_account_cannot_keep_more_than_its_quota_however_it_sends_it(
    mallory: tuple[Context, Caller],
) -> None:
    ctx, attacker = mallory
    assistants = [attacker.new_assistant(name=f"A{n}")["id"] for n in range(3)]
    answers = [
        upload(attacker.client, assistants[n % 3], (f"n{n}.txt", note(n))).status_code
        for n in range(12)
    ]
    assert answers == [201] * 8 + [403] * 4
    assert file_count(ctx) == 8
    refused = upload(attacker.client, assistants[0], ("more.txt", note(99)))
    assert refused.json()["error"]["code"] == "quota_exceeded"
    # Removing a file makes room again.
    listed = attacker.client.get(f"/api/v1/assistants/{assistants[0]}/files").json()
    gone = attacker.client.delete(f"/api/v1/assistants/{assistants[0]}/files/{listed[0]['id']}")
    assert gone.status_code == 204
    assert upload(attacker.client, assistants[0], ("more.txt", note(99))).status_code == 201
