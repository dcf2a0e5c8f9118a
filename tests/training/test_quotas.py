"""Per-account quotas on training files, their bytes and their passages (issue #8, item 5).

Files and bytes are checked when an upload arrives: a refused upload is a 403
``quota_exceeded`` in the API, a sentence in the panel and the CLI, and it
stores nothing (not even the files of the same request that fitted). Passages
are known only once a file is cut into them: a file that would take the
account past its limit fails, explained, and the passages already there stay.
Failed files count toward nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatmeter.accounts.models import User
from chatmeter.context import Context
from chatmeter.training import service as training
from chatmeter.training.models import FilePart
from chatmeter.web.app import create_app
from tests.assistants.callers import chunk_rows, file_count
from tests.support.api import Caller, caller
from tests.support.cli import Operator
from tests.support.context import derived
from tests.support.panel import Panel
from tests.training.test_job import long_text, note

QUOTA = {"quota_files": 3, "quota_file_bytes": 6000, "quota_passages": 5}


@pytest.fixture
def limited(ctx: Context) -> Iterator[tuple[Context, Caller]]:
    """An app whose accounts may keep 3 files, 6,000 bytes and 5 passages."""
    small = derived(ctx, **QUOTA)
    with TestClient(create_app(small)) as client:
        yield small, caller(small, client, "carol@example.com")


def upload(client: TestClient, assistant_id: int, *items: tuple[str, bytes]):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/assistants/{assistant_id}/files",
        files=[("files", (name, data, "text/plain")) for name, data in items],
    )


def stored_parts(ctx: Context) -> int:
    with ctx.db.read() as session:
        return session.scalar(select(func.count()).select_from(FilePart)) or 0


def test_the_files_quota_refuses_the_upload_that_would_pass_it(
    limited: tuple[Context, Caller],
) -> None:
    ctx, carol = limited
    first, second = carol.new_assistant()["id"], carol.new_assistant(name="Other")["id"]
    assert upload(carol.client, first, ("a.txt", note(1)), ("b.txt", note(2))).status_code == 201
    refused = upload(carol.client, second, ("c.txt", note(3)), ("d.txt", note(4)))
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "d.txt would bring this account to 4 training files" in error["message"]
    assert "over its limit of 3" in error["message"]
    assert error["details"] == {"quota": "files", "limit": 3, "used": 3}  # c.txt counted
    assert (file_count(ctx), stored_parts(ctx)) == (2, 2)  # c.txt fitted, and is not kept
    assert upload(carol.client, second, ("c.txt", note(3))).status_code == 201
    # The same content again is no new file: it is recognised, not refused.
    again = upload(carol.client, first, ("copy.txt", note(1)))
    assert again.status_code == 200 and again.json()[0]["duplicate"] is True


def test_the_bytes_quota_counts_every_file_of_the_account(
    limited: tuple[Context, Caller],
) -> None:
    ctx, carol = limited
    assistant = carol.new_assistant()["id"]
    assert upload(carol.client, assistant, ("a.txt", b"a" * 4500)).status_code == 201
    refused = upload(carol.client, assistant, ("b.txt", b"b" * 1600))
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "b.txt" in error["message"] and "6,000 bytes" in error["message"]
    assert error["details"] == {"quota": "bytes", "limit": 6000, "used": 4500}
    assert file_count(ctx) == 1
    assert upload(carol.client, assistant, ("b.txt", b"b" * 1500)).status_code == 201


@pytest.mark.model
def test_failed_files_count_toward_no_quota(limited: tuple[Context, Caller]) -> None:
    ctx, carol = limited
    assistant = carol.new_assistant()["id"]
    assert upload(carol.client, assistant, ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(3000)))
    assert training.process_queue(ctx) == {"ready": 0, "failed": 1}
    assert upload(carol.client, assistant, ("a.txt", b"a" * 5900)).status_code == 201


@pytest.mark.model
def test_a_file_that_would_pass_the_passages_quota_fails_explained(
    limited: tuple[Context, Caller],
) -> None:
    ctx, carol = limited
    assistant = carol.new_assistant()["id"]
    three = upload(carol.client, assistant, ("three.txt", long_text(3))).json()[0]["id"]
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    before = chunk_rows(ctx, assistant_id=assistant)
    assert len(before) == 3
    with ctx.db.uow() as uow:  # uploaded while the account still had room
        from chatmeter.assistants.models import Assistant

        target = uow.session.get(Assistant, assistant)
        assert target is not None
        four = training.upload(
            uow.session,
            assistant=target,
            filename="four.txt",
            data=long_text(4),
            max_bytes=10**7,
            now=ctx.clock.now(),
            quota=training.Quota.of(ctx.settings),
        ).file.id
        uow.commit()
    assert training.process_queue(ctx) == {"ready": 0, "failed": 1}
    shown = carol.client.get(f"/api/v1/assistants/{assistant}/files/{four}").json()
    assert (shown["status"], shown["error"]["code"]) == ("failed", "quota")
    assert "makes 4 passages" in shown["error"]["message"]
    assert "room for only 2 more of its 5" in shown["error"]["message"]
    assert chunk_rows(ctx, assistant_id=assistant) == before
    assert carol.client.get(f"/api/v1/assistants/{assistant}/files/{three}").json()["chunks"] == 3


@pytest.mark.model
def test_an_account_at_its_passages_quota_is_refused_at_upload(
    limited: tuple[Context, Caller],
) -> None:
    ctx, carol = limited
    assistant = carol.new_assistant()["id"]
    assert upload(carol.client, assistant, ("five.txt", long_text(5))).status_code == 201
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    refused = upload(carol.client, assistant, ("more.txt", note(9)))
    assert refused.status_code == 403
    assert refused.json()["error"]["details"] == {"quota": "passages", "limit": 5, "used": 5}
    assert "5 passages" in refused.json()["error"]["message"]


def test_the_panel_explains_a_refused_upload_in_words(ctx: Context) -> None:
    small = derived(ctx, **QUOTA)
    with TestClient(create_app(small), base_url="http://127.0.0.1") as client:
        panel = Panel(client)
        panel.sign_up()
        with ctx.db.read() as session:
            account_id = session.scalar(select(User.account_id))
        created = panel.post("/panel/assistants/new", {"name": "Helper"})
        assistant_id = int(created.headers["location"].split("/")[3])
        token = panel.csrf(f"/panel/assistants/{assistant_id}/training")
        files = [("files", (f"n{n}.txt", note(n))) for n in range(4)]
        scripted = client.post(
            f"/panel/assistants/{assistant_id}/files",
            files=files,
            headers={"X-CSRF-Token": token},
        )
        assert scripted.status_code == 403
        assert scripted.json()["error"]["message"].startswith(
            "N3.txt would bring this account to 4 training files, over its limit of 3"
        )
        plain = client.post(
            f"/panel/assistants/{assistant_id}/files",
            data={"csrf_token": token},
            files=files,
        )
        assert plain.status_code == 403
        assert "would bring this account to 4 training files" in plain.text
    assert account_id is not None
    assert file_count(ctx) == 0


def test_the_cli_explains_a_refused_file(operator: Operator) -> None:
    operator.env["CHATMETER_QUOTA_FILE_BYTES"] = "2000"
    assistant = operator.json("assistants", "create", "--account", "1", "--name", "Helper")
    big = operator.file("big.txt", b"word " * 500)
    out = operator.invoke("train", str(assistant["id"]), big, code=1)
    assert "big.txt would bring this account's training files to 2,500 bytes" in out.stderr
    assert "over its limit of 2,000 bytes" in out.stderr
    shown = operator.json_failing("train", str(assistant["id"]), big)
    assert shown[0]["error"]["code"] == "quota_exceeded"
    assert operator.json("assistants", "list", "--account", "1")[0]["id"] == assistant["id"]


def test_two_uploads_at_once_cannot_both_slip_under_the_limit(
    limited: tuple[Context, Caller],
) -> None:
    """Each fits alone, not both: the second waits on the account's lock, then counts
    the first."""
    import threading

    from chatmeter.assistants import service as assistants

    ctx, carol = limited
    assistant_id = carol.new_assistant()["id"]
    first_in, first_may_commit = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def store(label: str, *, hold: bool) -> None:
        try:
            with ctx.db.uow() as uow:
                assistant = assistants.get_assistant(
                    uow.session, account_id=carol.account_id, assistant_id=assistant_id
                )
                training.upload(
                    uow.session,
                    assistant=assistant,
                    filename=f"{label}.txt",
                    data=label.encode() * 4000,
                    max_bytes=ctx.settings.max_upload_bytes,
                    now=ctx.clock.now(),
                    quota=training.Quota.of(ctx.settings),
                )
                if hold:
                    first_in.set()
                    first_may_commit.wait(timeout=30)
                uow.commit()
                results[label] = "stored"
        except training.QuotaExceeded as exc:
            results[label] = exc.details["quota"]

    first = threading.Thread(target=store, args=("a",), kwargs={"hold": True})
    first.start()
    assert first_in.wait(timeout=30)
    second = threading.Thread(target=store, args=("b",), kwargs={"hold": False})
    second.start()
    second.join(timeout=1)  # it waits for the first transaction (row or database lock)
    first_may_commit.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert results == {"a": "stored", "b": "bytes"}
    assert file_count(ctx) == 1
