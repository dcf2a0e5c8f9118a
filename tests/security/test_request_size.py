"""Request size before authentication (issue #8, item 4), tried as an attacker would.

Every body is held to ``CHATMETER_MAX_BODY_BYTES`` whatever content type it
declares, with or without a declared length; only the two upload routes take
more, and only once the caller is known: an API key, or a panel session and
its CSRF token. The raw client declares bodies it never sends or stops half
way: a server that waited for the rest would never answer (the read times out).
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import User
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from chatmeter.training.content import PART_BYTES
from chatmeter.training.models import FilePart, TrainingFile
from chatmeter.web.app import create_app
from tests.security.live import (
    BodyCount,
    LiveServer,
    Multipart,
    chunked,
    exchange,
    probe,
    request_head,
    text_blocks,
)
from tests.support.accounts import new_account
from tests.support.panel import PASSWORD, Panel

DECLARED = 50 * 1024 * 1024  # far over the body limit, well under the upload ceiling


@dataclass
class Served:
    ctx: Context
    server: LiveServer
    count: BodyCount

    def send(self, method: str, path: str, headers: dict[str, str], body=()):  # type: ignore[no-untyped-def]
        return exchange(self.server.port, request_head(method, path, headers), body)


def serve(ctx: Context) -> Iterator[Served]:
    app = create_app(ctx)
    count = probe(app)
    with LiveServer(app) as server:
        yield Served(ctx, server, count)


@pytest.fixture
def served(ctx: Context) -> Iterator[Served]:
    yield from serve(ctx)


def api_key(ctx: Context, email: str = "alice@example.com") -> tuple[int, str]:
    account_id = new_account(ctx, email=email)
    with ctx.db.uow() as uow:
        key = accounts.issue_api_key(uow.session, account_id=account_id, now=ctx.clock.now())
        uow.commit()
    return account_id, key


def new_assistant(ctx: Context, account_id: int) -> int:
    with ctx.db.uow() as uow:
        created = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(name="Helper"),
            now=ctx.clock.now(),
        )
        uow.commit()
        return created.id


def stored_files(ctx: Context) -> int:
    with ctx.db.read() as session:
        return session.scalar(select(func.count()).select_from(TrainingFile)) or 0


def multipart_head(declared: int) -> dict[str, str]:
    return {
        "Content-Type": Multipart().content_type,
        "Content-Length": str(declared),
    }


# --- every route that is not an upload -------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/holds", "/api/v1/assistants", "/panel/sign-in"])
def test_a_multipart_body_elsewhere_is_refused_by_its_declared_length_unread(
    served: Served, path: str
) -> None:
    _, key = api_key(served.ctx)
    answer = served.send(
        "POST", path, {"Authorization": f"Bearer {key}"} | multipart_head(DECLARED)
    )
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert f"{served.ctx.settings.max_body_bytes:,} bytes" in answer.json()["error"]["message"]
    assert served.count.received == 0


@pytest.mark.parametrize(
    "content_type",
    [Multipart().content_type, "application/json", "application/x-www-form-urlencoded"],
)
def test_a_chunked_body_elsewhere_is_refused_once_it_passes_the_limit(
    served: Served, content_type: str
) -> None:
    """No declared length: counted as it arrives. The client stops one byte over the
    limit without ending the body, so only a server that stops reading can answer."""
    _, key = api_key(served.ctx)
    limit = served.ctx.settings.max_body_bytes
    pieces = [b"x" * 65536] * (limit // 65536) + [b"x" * (limit % 65536 + 1)]
    answer = served.send(
        "POST",
        "/api/v1/holds",
        {
            "Authorization": f"Bearer {key}",
            "Content-Type": content_type,
            "Transfer-Encoding": "chunked",
        },
        chunked(pieces),
    )
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert 0 < served.count.received <= limit  # the routes never saw a byte past it


# --- the API's upload -----------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-key", "Basic abc"])
def test_an_api_upload_without_a_valid_key_is_refused_before_its_body_is_read(
    served: Served, authorization: str | None
) -> None:
    account_id, _ = api_key(served.ctx)
    assistant_id = new_assistant(served.ctx, account_id)
    headers = multipart_head(DECLARED)
    if authorization:
        headers["Authorization"] = authorization
    answer = served.send("POST", f"/api/v1/assistants/{assistant_id}/files", headers)
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert served.count.received == 0
    assert stored_files(served.ctx) == 0


def test_an_api_upload_to_another_accounts_assistant_is_refused_before_reading(
    served: Served,
) -> None:
    bobs = new_assistant(served.ctx, api_key(served.ctx, "bob@example.com")[0])
    _, alices_key = api_key(served.ctx)
    answer = served.send(
        "POST",
        f"/api/v1/assistants/{bobs}/files",
        {"Authorization": f"Bearer {alices_key}"} | multipart_head(DECLARED),
    )
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert served.count.received == 0


def test_an_api_upload_declaring_more_than_the_upload_ceiling_is_refused_unread(
    served: Served,
) -> None:
    account_id, key = api_key(served.ctx)
    assistant_id = new_assistant(served.ctx, account_id)
    answer = served.send(
        "POST",
        f"/api/v1/assistants/{assistant_id}/files",
        {"Authorization": f"Bearer {key}"} | multipart_head(1024 * 1024 * 1024),
    )
    assert answer.status == 413
    assert served.count.received == 0


@pytest.fixture
def small_files(ctx: Context) -> Iterator[Served]:
    """Uploads limited to 1 MiB a file."""
    small = Context(
        settings=ctx.settings.model_copy(update={"max_upload_bytes": 1024 * 1024}),
        db=ctx.db,
        clock=ctx.clock,
        gateway=ctx.gateway,
    )
    yield from serve(small)


def test_a_file_over_the_limit_is_refused_as_soon_as_it_is_over(small_files: Served) -> None:
    account_id, key = api_key(small_files.ctx)
    assistant_id = new_assistant(small_files.ctx, account_id)
    body = Multipart()
    sent = [
        body.file_head("files", "notes.txt"),
        *text_blocks(1024 * 1024 + 65536),  # and the client has 2 MiB more to send
    ]
    answer = small_files.send(
        "POST",
        f"/api/v1/assistants/{assistant_id}/files",
        {"Authorization": f"Bearer {key}"} | multipart_head(3 * 1024 * 1024 + 200),
        sent,
    )
    assert answer.status == 413
    error = answer.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "notes.txt" in error["message"] and "1,048,576" in error["message"]
    assert small_files.count.received <= sum(len(piece) for piece in sent)
    assert stored_files(small_files.ctx) == 0


def test_a_large_upload_within_the_limits_is_spooled_to_disk_not_memory(
    served: Served,
) -> None:
    """Two files of 16 MiB: the server's Python heap holds a few parts (of 1 MiB) at a
    time, never a whole file."""
    account_id, key = api_key(served.ctx)
    assistant_id = new_assistant(served.ctx, account_id)
    size = 16 * 1024 * 1024
    digests = [hashlib.sha256(b"".join(text_blocks(size, seed=n))).hexdigest() for n in (1, 2)]
    body = Multipart()
    for n in (1, 2):
        body.file("files", f"log{n}.txt", text_blocks(size, seed=n), size)
    body.end()
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": body.content_type,
        "Content-Length": str(body.length),
    }
    tracemalloc.start()
    try:
        answer = served.send("POST", f"/api/v1/assistants/{assistant_id}/files", headers, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status == 201, answer.body
    assert [(f["filename"], f["size"], f["sha256"]) for f in answer.json()] == [
        ("log1.txt", size, digests[0]),
        ("log2.txt", size, digests[1]),
    ]
    assert served.count.received == body.length
    assert peak < 6 * PART_BYTES, f"peak {peak:,} bytes of Python memory for {size:,}-byte files"
    with served.ctx.db.read() as session:
        parts = session.execute(
            select(FilePart.file_id, func.count(), func.max(func.length(FilePart.data))).group_by(
                FilePart.file_id
            )
        ).all()
    assert len(parts) == 2
    assert all(count == 16 and longest == PART_BYTES for _, count, longest in parts)


# --- the panel's upload -----------------------------------------------------------------


@dataclass
class SignedIn:
    served: Served
    panel: Panel
    assistant_id: int

    @property
    def cookies(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.panel.client.cookies.items())

    @property
    def path(self) -> str:
        return f"/panel/assistants/{self.assistant_id}/files"

    def token(self) -> str:
        return self.panel.csrf(f"/panel/assistants/{self.assistant_id}/training")


@pytest.fixture
def signed_in(served: Served) -> Iterator[SignedIn]:
    with httpx.Client(base_url=served.server.url) as client:
        panel = Panel(client)  # type: ignore[arg-type]
        fields = {"email": "owner@example.com", "password": PASSWORD, "name": "Shop"}
        assert panel.post("/panel/sign-up", fields | {"timezone": "UTC"}).status_code == 303
        with served.ctx.db.read() as session:
            account_id = session.scalar(
                select(User.account_id).where(User.email == "owner@example.com")
            )
        assert account_id is not None
        signed_in = SignedIn(served, panel, new_assistant(served.ctx, account_id))
        signed_in.token()
        served.count.received = 0  # count only what the test sends from here
        yield signed_in


@pytest.mark.parametrize("scripted", [True, False])
def test_a_panel_upload_without_a_session_is_refused_before_reading(
    signed_in: SignedIn, scripted: bool
) -> None:
    headers = multipart_head(DECLARED)
    if scripted:
        headers["X-CSRF-Token"] = signed_in.token()
    answer = signed_in.served.send("POST", signed_in.path, headers)
    assert answer.status == (401 if scripted else 303)
    if scripted:
        assert "sign in again" in answer.json()["error"]["message"]
    else:
        assert answer.headers["location"] == "/panel/sign-in"
    assert signed_in.served.count.received == 0


def test_a_scripted_panel_upload_with_a_wrong_token_is_refused_before_reading(
    signed_in: SignedIn,
) -> None:
    answer = signed_in.served.send(
        "POST",
        signed_in.path,
        {"Cookie": signed_in.cookies, "X-CSRF-Token": "forged"} | multipart_head(DECLARED),
    )
    assert answer.status == 403
    assert "reload the page" in answer.json()["error"]["message"]
    assert signed_in.served.count.received == 0
    assert stored_files(signed_in.served.ctx) == 0


@pytest.mark.parametrize("token", ["forged", None])
def test_a_plain_panel_upload_with_a_wrong_token_is_refused_before_its_files_are_read(
    signed_in: SignedIn, token: str | None
) -> None:
    """The page's form sends its token first; the files after it are never read."""
    form = Multipart()
    if token:
        form.field("csrf_token", token)
    sent = [*form, form.file_head("files", "notes.txt"), b"Some text " * 100]
    answer = signed_in.served.send(
        "POST", signed_in.path, {"Cookie": signed_in.cookies} | multipart_head(DECLARED), sent
    )
    assert answer.status == 403
    assert b"reload the page" in answer.body
    assert signed_in.served.count.received <= sum(len(piece) for piece in sent)
    assert stored_files(signed_in.served.ctx) == 0


def test_a_large_panel_upload_within_the_limits_works(signed_in: SignedIn) -> None:
    size = 5 * 1024 * 1024
    for scripted in (True, False):
        form = Multipart()
        token = signed_in.token()
        if not scripted:
            form.field("csrf_token", token)
        form.file("files", f"manual-{scripted}.txt", text_blocks(size, seed=scripted), size).end()
        headers = {
            "Cookie": signed_in.cookies,
            "Content-Type": form.content_type,
            "Content-Length": str(form.length),
        }
        if scripted:
            headers["X-CSRF-Token"] = token
        answer = signed_in.served.send("POST", signed_in.path, headers, form)
        assert answer.status == (201 if scripted else 303), answer.body
    assert stored_files(signed_in.served.ctx) == 2


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        ("multipart/form-data", b"--x\r\n", "multipart/form-data"),  # no boundary
        ("text/plain", b"hello", "multipart/form-data"),
        (
            Multipart().content_type,
            Multipart().file_head("files", "cut.txt") + b"half a file",
            "ended before its last part",
        ),
        (Multipart().content_type, b"--chatmeter-test-boundary-7d1f\r\nno colon\r\n\r\nx", None),
        (Multipart().content_type, b"no boundary anywhere", None),
    ],
)
def test_a_malformed_upload_is_refused_as_bad_input_and_stores_nothing(
    served: Served, content_type: str, body: bytes, words: str | None
) -> None:
    account_id, key = api_key(served.ctx)
    assistant_id = new_assistant(served.ctx, account_id)
    answer = served.send(
        "POST",
        f"/api/v1/assistants/{assistant_id}/files",
        {
            "Authorization": f"Bearer {key}",
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
        },
        [body],
    )
    assert answer.status == 422, answer.body
    assert answer.json()["error"]["code"] == "invalid_input"
    if words:
        assert words in answer.json()["error"]["message"]
    assert stored_files(served.ctx) == 0
