"""The assistants pages: create and edit every setting, training files with their status,
the streaming test chat paid like any conversation, the embed snippet, conversations.

Every bad value (journey 6) is refused with a sentence naming the field and leaves
the database as it was; another account's ids are a 404 page; a form without its
CSRF token changes nothing. The test chat runs the bundled model.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.chat.models import Conversation, Message
from chatmeter.context import Context
from chatmeter.training import service as training
from chatmeter.training.models import TrainingFile
from chatmeter.web.app import create_app
from tests.chat.shop import DOCUMENTS, available, entries, sse
from tests.knowledge import files
from tests.support.accounts import add_tokens, spend
from tests.support.context import derived
from tests.support.ledger import assert_ledger_settled
from tests.support.panel import Panel, new_panel

VALID = {
    "name": "Help Center",
    "instructions": "Answer briefly, from the passages only.",
    "model": "local",
    "temperature": "0",
    "max_tokens": "16",
    "passages": "2",
    "context_budget": "300",
    "welcome_message": "Hello! Ask me about our shop.",
    "widget_title": "Northwind Help",
    "widget_color": "#0f766e",
    "widget_position": "left",
    "allowed_domains": "shop.example.com\n*.northwind.example",
}
WHOLE = "must be a whole number from"
BAD_SETTINGS = [
    ("name", "", "The name must not be empty."),
    ("name", "   ", "The name must not be blank."),
    ("name", "x" * 101, "The name must be at most 100 characters long."),
    ("instructions", "y" * 4001, "The instructions must be at most 4,000 characters long."),
    ("welcome_message", "w" * 501, "The welcome message must be at most 500 characters long."),
    ("widget_title", "t" * 61, "The widget title must be at most 60 characters long."),
    ("model", "m" * 101, "is not offered on this server."),
    ("model", "anthropic", "The model 'anthropic' is not offered on this server"),
    (
        "model",
        "openai:fake-model",
        "The model 'openai:fake-model' is not offered on this server; choose one of: local, "
        "openai:gpt-4o-mini.",
    ),
    ("daily_token_cap", "-1", f"The daily token cap {WHOLE} 0 to 1,000,000,000."),
    ("daily_token_cap", "lots", f"The daily token cap {WHOLE} 0 to 1,000,000,000."),
    ("monthly_token_cap", "-5", f"The monthly token cap {WHOLE} 0 to 1,000,000,000."),
    ("monthly_token_cap", "1e6", f"The monthly token cap {WHOLE} 0 to 1,000,000,000."),
    ("turns_per_conversation", "10001", f"The questions per conversation {WHOLE} 0 to 10,000."),
    ("show_sources", "everything", "The sources shown must be 'none', 'names' or 'passages'."),
    # The settings page's own words for these fields (its labels): not the API's.
    ("max_tokens", "", f"The longest answer {WHOLE} 16 to 2,048."),
    ("max_tokens", "ten", f"The longest answer {WHOLE} 16 to 2,048."),
    ("max_tokens", "-5", f"The longest answer {WHOLE} 16 to 2,048."),
    ("max_tokens", "99999999999999", f"The longest answer {WHOLE} 16 to 2,048."),
    ("max_tokens", "1.5", f"The longest answer {WHOLE} 16 to 2,048."),
    ("passages", "0", f"The sources read per answer {WHOLE} 1 to 10."),
    ("context_budget", "8001", f"The reading per answer {WHOLE} 50 to 8,000."),
    ("temperature", "-1", "The creativity must be a number from 0 to 2."),
    ("temperature", "hot", "The creativity must be a number from 0 to 2."),
    ("temperature", "nan", "The creativity must be a number from 0 to 2."),
    ("widget_color", "red", "The colour must be a colour code such as #0f766e."),
    ("widget_color", "#12345", "The colour must be a colour code such as #0f766e."),
    ("widget_position", "top", "The position must be 'left' or 'right'."),
    ("allowed_domains", "not a domain!", "'domain!' is not a domain name"),
    ("allowed_domains", "exa_mple.com", "'exa_mple.com' is not a domain name"),
    ("allowed_domains", " ".join(f"s{i}.example.com" for i in range(51)), "List at most 50"),
]


# --- helpers ----------------------------------------------------------------------------


def text_of(response: Response) -> str:
    return html.unescape(response.text)


def csrf(panel: Panel, path: str = "/panel/assistants/new") -> str:
    return panel.csrf(path)


def create(panel: Panel, **fields: str) -> int:
    response = panel.post("/panel/assistants/new", {"name": "Help Center"} | fields)
    assert response.status_code == 303, response.text
    match = re.fullmatch(
        r"/panel/assistants/(\d+)/training\?done=created", response.headers["location"]
    )
    assert match, response.headers["location"]
    return int(match[1])


def stored(ctx: Context, assistant_id: int) -> dict[str, Any]:
    with ctx.db.read() as session:
        assistant = session.get(Assistant, assistant_id)
        assert assistant is not None
        return assistants.assistant_dict(assistant) | {
            "own_title": assistant.widget_title,
            "deleted_at": assistant.deleted_at,
        }


def count(ctx: Context, model: type, **where: Any) -> int:
    query = select(func.count()).select_from(model)
    for column, value in where.items():
        query = query.where(getattr(model, column) == value)
    with ctx.db.read() as session:
        return int(session.scalar(query) or 0)


def upload(panel: Panel, assistant_id: int, *named: tuple[str, bytes], token: str | None = None):  # type: ignore[no-untyped-def]
    path = f"/panel/assistants/{assistant_id}/training"
    token = panel.csrf(path) if token is None else token
    return panel.client.post(
        f"/panel/assistants/{assistant_id}/files",
        files=[("files", (name, data, "application/octet-stream")) for name, data in named],
        headers={"X-CSRF-Token": token},
    )


def ask(panel: Panel, assistant_id: int, message: Any, token: str | None = None) -> Response:
    token = panel.csrf(f"/panel/assistants/{assistant_id}/test") if token is None else token
    return panel.client.post(
        f"/panel/assistants/{assistant_id}/test-chat",
        json={"message": message, "conversation_id": None},
        headers={"X-CSRF-Token": token, "Accept": "text/event-stream"},
    )


def files_json(panel: Panel, assistant_id: int) -> dict[str, Any]:
    response = panel.client.get(f"/panel/assistants/{assistant_id}/files.json")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _account(ctx: Context, assistant_id: int) -> int:
    with ctx.db.read() as session:
        assistant = session.get(Assistant, assistant_id)
        assert assistant is not None
        return assistant.account_id


# --- signed out, other accounts, CSRF --------------------------------------------------


PAGES = ["", "/training", "/test", "/embed", "/conversations", "/conversations/1", "/delete"]


def test_signed_out_visitors_are_sent_to_sign_in(panel: Panel) -> None:
    for path in ["/panel/assistants", "/panel/assistants/new"] + [
        f"/panel/assistants/1{page}" for page in [*PAGES, "/rotate-key"]
    ]:
        response = panel.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/panel/sign-in"
    assert panel.client.get("/panel/assistants/1/files.json").status_code == 401
    assert ask(panel, 1, "Hello?", token="x").status_code == 401


def test_another_accounts_assistant_is_a_404_page_and_stays_untouched(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up("bob@example.com")
    bobs = create(panel, name="Bob's secret bot")
    assert upload(panel, bobs, ("prices.txt", b"Our prices are secret.")).status_code == 201
    before = stored(ctx, bobs)
    alice = new_panel(ctx)
    alice.sign_up("alice@example.com")
    mine = create(alice, name="Alice's bot")
    for target in (str(bobs), "999999", "abc", "9" * 30):
        for page in [*PAGES, "/rotate-key"]:
            response = alice.client.get(f"/panel/assistants/{target}{page}")
            assert response.status_code == 404, (target, page)
            assert "Not found" in response.text and "Bob's secret" not in text_of(response)
    (bobs_file,) = files_json(panel, bobs)["files"]
    token = alice.csrf("/panel/assistants/new")
    for path, data in [
        (f"/panel/assistants/{bobs}", VALID),
        (f"/panel/assistants/{bobs}/delete", {}),
        (f"/panel/assistants/{bobs}/rotate-key", {}),
        (f"/panel/assistants/{bobs}/files/{bobs_file['id']}/delete", {}),
        (f"/panel/assistants/{mine}/files/{bobs_file['id']}/delete", {}),
    ]:
        response = alice.client.post(path, data={"csrf_token": token} | data)
        assert response.status_code == 404, path
    assert alice.client.get(f"/panel/assistants/{bobs}/files.json").status_code == 404
    assert upload(alice, bobs, ("x.txt", b"mine now"), token=token).status_code == 404
    assert ask(alice, bobs, "What are the prices?", token=token).status_code == 404
    assert stored(ctx, bobs) == before
    assert count(ctx, TrainingFile, assistant_id=bobs) == 1
    assert "Bob's secret" not in text_of(alice.client.get("/panel/assistants"))


def test_forms_without_their_csrf_token_change_nothing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    assert upload(panel, assistant_id, ("a.txt", b"Some text.")).status_code == 201
    (file,) = files_json(panel, assistant_id)["files"]
    before = stored(ctx, assistant_id)
    for token in ({}, {"csrf_token": "forged"}):
        for path, data in [
            ("/panel/assistants/new", {"name": "Sneaky"}),
            (f"/panel/assistants/{assistant_id}", VALID),
            (f"/panel/assistants/{assistant_id}/delete", {}),
            (f"/panel/assistants/{assistant_id}/rotate-key", {}),
            (f"/panel/assistants/{assistant_id}/files/{file['id']}/delete", {}),
        ]:
            response = panel.client.post(path, data=token | data, follow_redirects=False)
            assert response.status_code == 403, path
            assert "This form has expired; reload the page and try again." in text_of(response)
    plain = panel.client.post(
        f"/panel/assistants/{assistant_id}/files", files=[("files", ("b.txt", b"More text."))]
    )
    assert plain.status_code == 403
    assert upload(panel, assistant_id, ("c.txt", b"Other."), token="forged").status_code == 403
    assert ask(panel, assistant_id, "Hi", token="forged").status_code == 403
    assert stored(ctx, assistant_id) == before
    assert count(ctx, Assistant) == 1
    assert count(ctx, TrainingFile) == 1
    assert count(ctx, Conversation) == 0


# --- creating and editing --------------------------------------------------------------


def test_a_new_assistant_is_created_from_the_form(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assert "Create your first assistant" in panel.client.get("/panel/assistants").text
    form = panel.client.get("/panel/assistants/new").text
    assert 'name="name"' in form and "Answer from the passages provided" in form
    assistant_id = create(
        panel,
        name="  Help Center  ",
        widget_title="Northwind Help",
        welcome_message="Hi there!",
        instructions="Be brief.",
    )
    row = stored(ctx, assistant_id)
    assert (row["name"], row["widget_title"]) == ("Help Center", "Northwind Help")
    assert (row["welcome_message"], row["instructions"]) == ("Hi there!", "Be brief.")
    assert row["max_tokens"] == assistants.DEFAULTS["max_tokens"]
    page = panel.client.get(f"/panel/assistants/{assistant_id}/training?done=created")
    assert "Your assistant is created" in page.text
    listing = panel.client.get("/panel/assistants").text
    assert "Help Center" in listing and f'/panel/assistants/{assistant_id}"' in listing
    assert re.search(rf'data-testid="status-{assistant_id}">Hidden: no tokens yet<', listing)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "The name must not be empty."),
        ({"name": "n" * 101}, "The name must be at most 100 characters long."),
        ({"name": "Ok", "welcome_message": "w" * 501}, "The welcome message must be at most"),
        ({"name": "Ok", "widget_title": "t" * 61}, "The widget title must be at most 60"),
        ({}, "An assistant needs a name."),
    ],
    ids=["empty", "too-long", "long-welcome", "long-title", "missing"],
)
def test_bad_input_on_the_new_form_creates_nothing(
    ctx: Context, panel: Panel, fields: dict[str, str], message: str
) -> None:
    panel.sign_up()
    token = csrf(panel)
    response = panel.client.post("/panel/assistants/new", data={"csrf_token": token} | fields)
    assert response.status_code == 422
    assert message in text_of(response)
    assert count(ctx, Assistant) == 0


def test_a_file_where_text_belongs_is_refused(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    response = panel.client.post(
        "/panel/assistants/new",
        data={"csrf_token": csrf(panel)},
        files={"name": ("name.txt", b"Sneaky", "text/plain")},
    )
    assert response.status_code == 422
    assert "Name must be text." in text_of(response)
    assert count(ctx, Assistant) == 0


def test_every_setting_is_saved_from_the_settings_form(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = create(panel, name="First name")
    saved = panel.post(f"/panel/assistants/{assistant_id}", VALID)
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/panel/assistants/{assistant_id}?done=saved"
    row = stored(ctx, assistant_id)
    expected = {
        "name": "Help Center",
        "instructions": VALID["instructions"],
        "provider": "local",
        "model": "",
        "temperature": 0.0,
        "max_tokens": 16,
        "passages": 2,
        "context_budget": 300,
        "welcome_message": VALID["welcome_message"],
        "widget_title": "Northwind Help",
        "widget_color": "#0f766e",
        "widget_position": "left",
        "allowed_domains": ["shop.example.com", "*.northwind.example"],
    }
    assert {name: row[name] for name in expected} == expected
    page = text_of(panel.client.get(f"/panel/assistants/{assistant_id}?done=saved"))
    assert "Your changes are saved." in page
    assert "shop.example.com\n*.northwind.example</textarea>" in page
    assert 'value="left" checked' in page and 'value="300"' in page

    again = panel.post(
        f"/panel/assistants/{assistant_id}",
        VALID
        | {
            "model": "openai:gpt-4o-mini",
            "temperature": "1.25",
            "widget_title": "",
            "allowed_domains": "",
            "widget_position": "right",
        },
    )
    assert again.status_code == 303
    row = stored(ctx, assistant_id)
    assert (row["provider"], row["model"], row["temperature"]) == ("openai", "gpt-4o-mini", 1.25)
    assert (row["own_title"], row["allowed_domains"], row["widget_position"]) == ("", [], "right")


@pytest.mark.parametrize(("field", "value", "message"), BAD_SETTINGS)
def test_bad_settings_are_explained_and_change_nothing(
    ctx: Context, panel: Panel, field: str, value: str, message: str
) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    before = stored(ctx, assistant_id)
    response = panel.post(f"/panel/assistants/{assistant_id}", VALID | {field: value})
    assert response.status_code == 422
    page = text_of(response)
    assert message in page
    assert f'id="e-{field}"' in page or field in ("widget_position", "show_sources")
    # The error summary links to the field, and the message is not said twice.
    link = rf'<a href="#f-{field}" data-field="{field}">[^<]*{re.escape(message)}'
    assert re.search(link, page), link
    assert 'class="alert alert-error"' not in page
    assert stored(ctx, assistant_id) == before
    if field == "max_tokens" and value:
        assert f'value="{value}"' in page  # the form keeps what was typed


# --- training files ------------------------------------------------------------------------


@pytest.mark.model
def test_several_files_upload_and_train_with_their_figures(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    sent = [
        ("handbook.pdf", files.pdf([[("Billing", ["Tokens come in packages of 5,000."])]])),
        ("guide.docx", files.word()),
        ("hours.md", DOCUMENTS["opening-hours.md"].encode()),
    ]
    response = upload(panel, assistant_id, *sent)
    assert response.status_code == 201, response.text
    rows = response.json()["files"]
    assert [(r["filename"], r["status"], r["duplicate"]) for r in rows] == [
        (name, "queued", False) for name, _ in sent
    ]
    assert count(ctx, TrainingFile, assistant_id=assistant_id) == 3
    assert files_json(panel, assistant_id)["summary"]["busy"] == 3

    again = upload(panel, assistant_id, ("copy.md", sent[2][1]))
    assert again.status_code == 200 and again.json()["files"][0]["duplicate"] is True
    assert count(ctx, TrainingFile, assistant_id=assistant_id) == 3

    assert training.process_queue(ctx) == {"ready": 3, "failed": 0}
    body = files_json(panel, assistant_id)
    assert [(f["filename"], f["status"], f["progress"]) for f in body["files"]] == [
        (name, "ready", 100) for name, _ in sent
    ]
    assert all(f["chunks"] > 0 and f["tokens"] > 0 for f in body["files"])
    assert body["summary"] | {"text": ""} == {
        "files": 3,
        "ready": 3,
        "busy": 0,
        "failed": 0,
        "text": "",
        "passages": sum(f["chunks"] for f in body["files"]),
        "tokens": sum(f["tokens"] for f in body["files"]),
    }
    page = text_of(panel.client.get(f"/panel/assistants/{assistant_id}/training"))
    assert page.count(">Ready<") == 3 and "handbook.pdf" in page and "1 page" in page

    plain = panel.client.post(
        f"/panel/assistants/{assistant_id}/files",
        data={"csrf_token": panel.csrf(f"/panel/assistants/{assistant_id}/training")},
        files=[("files", ("notes.txt", b"Plain form upload.")), ("files", ("more.txt", b"More."))],
        follow_redirects=False,
    )
    assert plain.status_code == 303
    assert plain.headers["location"].endswith("/training?done=uploaded")
    assert count(ctx, TrainingFile, assistant_id=assistant_id) == 5


@pytest.mark.model
def test_bad_files_are_explained_in_words(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    locked = files.encrypted_pdf(files.pdf([[("Secret", ["Hidden text."])]]))
    assert upload(panel, assistant_id, ("setup.exe", b"MZ\x90\x00" + bytes(200))).status_code == 201
    assert upload(panel, assistant_id, ("locked.pdf", locked)).status_code == 201
    assert upload(panel, assistant_id, ("scan.pdf", files.image_only_pdf())).status_code == 201
    assert training.process_queue(ctx) == {"ready": 0, "failed": 3}
    errors = {f["filename"]: f["error"] for f in files_json(panel, assistant_id)["files"]}
    assert "can't be used for training" in errors["setup.exe"]
    assert "protected by a password" in errors["locked.pdf"]
    assert "no text layer" in errors["scan.pdf"]
    page = text_of(panel.client.get(f"/panel/assistants/{assistant_id}/training"))
    assert all(message in page for message in errors.values())
    assert page.count(">Failed<") == 3

    empty = upload(panel, assistant_id, ("empty.pdf", b""))
    assert empty.status_code == 422
    assert empty.json()["error"]["message"] == "Empty.pdf is empty."
    nothing = panel.client.post(
        f"/panel/assistants/{assistant_id}/files",
        headers={"X-CSRF-Token": panel.csrf(f"/panel/assistants/{assistant_id}/training")},
        files=[("other", ("x.txt", b"x"))],
    )
    assert nothing.status_code == 422
    assert nothing.json()["error"]["message"] == "Choose 1 to 20 files to upload."
    assert count(ctx, TrainingFile, assistant_id=assistant_id) == 3


def test_a_file_over_the_size_limit_is_refused(ctx: Context) -> None:
    small = derived(ctx, max_upload_bytes=2048)
    with TestClient(create_app(small), base_url="http://127.0.0.1") as client:
        panel = Panel(client)
        panel.sign_up()
        assistant_id = create(panel)
        response = upload(panel, assistant_id, ("ok.txt", b"fine"), ("big.txt", b"x" * 3000))
    assert response.status_code == 413
    assert response.json()["error"]["message"] == (
        "Big.txt is larger than the limit of 2,048 bytes."
    )
    assert count(ctx, TrainingFile) == 0  # the good file did not go in either


def test_removing_a_file(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    upload(panel, assistant_id, ("a.txt", b"Alpha text."), ("b.txt", b"Beta text."))
    first, second = files_json(panel, assistant_id)["files"]
    path = f"/panel/assistants/{assistant_id}/files/{first['id']}/delete"
    response = panel.post(path, {}, page=f"/panel/assistants/{assistant_id}/training")
    assert response.status_code == 303
    assert [f["id"] for f in files_json(panel, assistant_id)["files"]] == [second["id"]]
    gone = panel.post(path, {}, page=f"/panel/assistants/{assistant_id}/training")
    assert gone.status_code == 404 and "No such file." in gone.text


# --- the test chat and conversations -------------------------------------------------------


def trained(ctx: Context, panel: Panel) -> int:
    assistant_id = create(panel)
    settings = VALID | {"allowed_domains": "", "passages": "2"}
    assert panel.post(f"/panel/assistants/{assistant_id}", settings).status_code == 303
    upload(panel, assistant_id, *[(n, t.encode()) for n, t in DOCUMENTS.items()])
    assert training.process_queue(ctx) == {"ready": 2, "failed": 0}
    return assistant_id


@pytest.mark.model
def test_the_test_chat_streams_and_is_paid_like_any_conversation(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up()
    assistant_id = trained(ctx, panel)
    account_id = _account(ctx, assistant_id)
    add_tokens(ctx, account_id, 5_000)
    assert "Get more tokens" in panel.client.get(f"/panel/assistants/{assistant_id}/test").text

    response = ask(panel, assistant_id, "How many tokens are in one package?")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) >= 3
    done = events[-1][1]
    answer = "".join(data["text"] for kind, data in events if kind == "delta")
    tokens = done["tokens"]
    assert tokens["context"] > 0 and tokens["response"] > 0
    assert tokens["total"] == tokens["context"] + tokens["response"]
    assert {s["filename"] for s in done["sources"]} <= set(DOCUMENTS)
    assert done["sources"][0]["filename"] == "buying-tokens.txt"
    assert done["sources"][0]["title"] == "Buying tokens"  # what visitors see
    assert available(ctx, account_id) == 5_000 - tokens["total"] == done["figures"]["balance"]
    assert_ledger_settled(ctx)
    with ctx.db.read() as session:
        conversation = session.scalars(select(Conversation)).one()
        reply = session.scalars(select(Message).where(Message.role == "assistant")).one()
        assert conversation.visitor == "panel:test"
        assert (reply.content, reply.context_tokens, reply.generation_tokens) == (
            answer,
            tokens["context"],
            tokens["response"],
        )

    listing = text_of(panel.client.get(f"/panel/assistants/{assistant_id}/conversations"))
    assert ">Test</span>" in listing and "How many tokens are in one package?" in listing
    assert f">{tokens['total']:,}</strong>" in listing
    detail = panel.client.get(f"/panel/assistants/{assistant_id}/conversations/{conversation.id}")
    page = text_of(detail)
    assert answer.strip() in page
    figures = re.search(rf'data-testid="figures-{reply.id}">(.*?)</p>', page, re.S)
    assert figures is not None
    shown = re.sub(r"<[^>]+>|\s+", " ", figures[1]).split()
    assert shown == [
        "Context",
        f"{tokens['context']:,}",
        "Response",
        f"{tokens['response']:,}",
        "Total",
        f"{tokens['total']:,}",
        "tokens",
    ]
    # As visitors see it, and which of the customer's files it is.
    assert '<span class="source-name">Buying tokens</span>' in page
    assert '<span class="muted source-file"> (buying-tokens.txt)</span>' in page
    other = create(panel, name="Other")
    assert (
        panel.client.get(f"/panel/assistants/{other}/conversations/{conversation.id}").status_code
        == 404
    )


@pytest.mark.model
def test_out_of_tokens_the_test_chat_says_so_and_spends_nothing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = trained(ctx, panel)
    account_id = _account(ctx, assistant_id)

    # Before any tokens: nothing ran out, the chat says what an answer needs.
    first = ask(panel, assistant_id, "How many tokens are in one package?")
    assert first.status_code == 402
    assert first.json()["error"] == {
        "code": "out_of_tokens",
        "message": "Your account has no tokens yet: an answer uses tokens, as on your website.",
    }
    assert entries(ctx, account_id) == []
    # Once they are spent, it is out of tokens.
    add_tokens(ctx, account_id, 1_000)
    spend(ctx, account_id, 1_000, key="all-of-it")
    spent = [entry.id for entry in entries(ctx, account_id)]

    response = ask(panel, assistant_id, "How many tokens are in one package?")

    assert response.status_code == 402
    assert response.json()["error"] == {
        "code": "out_of_tokens",
        "message": "You are out of tokens: your assistants cannot answer anyone.",
    }
    assert [entry.id for entry in entries(ctx, account_id)] == spent
    assert count(ctx, Conversation) == 0


@pytest.mark.parametrize(
    ("message", "status", "text"),
    [("   ", 422, "The message is empty."), ("x" * 2001, 422, "longer than 2,000"), (7, 422, "")],
)
def test_bad_test_chat_messages_are_refused(
    ctx: Context, panel: Panel, message: Any, status: int, text: str
) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    add_tokens(ctx, _account(ctx, assistant_id), 5_000)
    response = ask(panel, assistant_id, message)
    assert response.status_code == status
    assert text in response.json()["error"]["message"]
    assert count(ctx, Conversation) == 0
    assert_ledger_settled(ctx)


# --- list, embed, rotate, delete ------------------------------------------------------------


@pytest.mark.model
def test_the_list_shows_each_assistants_status(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    empty, waiting, ready = (
        create(panel, name="A"),
        create(panel, name="B"),
        create(panel, name="C"),
    )
    upload(panel, ready, ("ready.txt", b"Ready text."))
    training.process_queue(ctx)
    upload(panel, waiting, ("queued.txt", b"Queued text."))
    add_tokens(ctx, _account(ctx, empty), 5_000)
    page = panel.client.get("/panel/assistants").text
    for assistant_id, label in [(empty, "No files"), (waiting, "Training"), (ready, "Ready")]:
        assert f'data-testid="status-{assistant_id}">{label}<' in page
    assert "You are out of tokens." in page  # the banner is there, hidden while tokens last


def test_the_embed_page_shows_the_snippet_and_a_new_key_replaces_it(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    key = stored(ctx, assistant_id)["public_key"]
    page = panel.client.get(f"/panel/assistants/{assistant_id}/embed")
    code = re.search(r'<code id="embed-snippet" data-testid="snippet">(.*?)</code>', page.text)
    assert code is not None
    assert html.unescape(code[1]) == (
        f'<script src="http://127.0.0.1:8000/widget.js" data-assistant="{key}" async></script>'
    )
    assert '<script src="http://127.0.0.1:8000/widget.js' not in page.text  # shown, not run
    assert "No website is allowed yet" in page.text and "data-copy=" in page.text

    confirm = panel.client.get(f"/panel/assistants/{assistant_id}/rotate-key")
    assert "Issue a new public key?" in confirm.text
    done = panel.post(f"/panel/assistants/{assistant_id}/rotate-key", {}, page=confirm.url.path)
    assert done.status_code == 303
    new_key = stored(ctx, assistant_id)["public_key"]
    assert new_key != key and new_key.startswith("pk_")
    page = panel.client.get(done.headers["location"])
    assert new_key in page.text and key not in page.text and "A new public key" in page.text


def test_deleting_an_assistant_asks_first(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = create(panel, name="Short-lived")
    confirm = panel.client.get(f"/panel/assistants/{assistant_id}/delete")
    assert "Delete Short-lived?" in confirm.text and stored(ctx, assistant_id)["deleted_at"] is None
    done = panel.post(f"/panel/assistants/{assistant_id}/delete", {}, page=confirm.url.path)
    assert done.status_code == 303 and done.headers["location"] == "/panel/assistants?done=deleted"
    assert stored(ctx, assistant_id)["deleted_at"] is not None
    listing = panel.client.get(done.headers["location"]).text
    assert "Short-lived" not in listing and "The assistant is deleted." in listing
    assert panel.client.get(f"/panel/assistants/{assistant_id}").status_code == 404


@pytest.mark.model
def test_one_passage_is_counted_in_the_singular(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant_id = create(panel)
    note = ("note.md", b"# Hours\n\nOpen every day from nine to five.\n")
    assert upload(panel, assistant_id, note).status_code == 201
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    assert files_json(panel, assistant_id)["summary"]["passages"] == 1
    page = text_of(panel.client.get(f"/panel/assistants/{assistant_id}/training"))
    sentence = re.search(r"Answers draw on.*?of text\.", page)
    assert sentence is not None
    figures = re.sub(r"<[^>]+>", "", sentence[0])
    assert re.fullmatch(r"Answers draw on 1 passage with \d+ tokens of text\.", figures)
