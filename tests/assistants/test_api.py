"""Assistants through the REST API: every setting kept, bad input refused with nothing
written, the embed key rotatable, deletion taking the training data with it, and
accounts that never see each other's assistants or files."""

from __future__ import annotations

from typing import Any

import pytest

from chatmeter.assistants import service as assistants
from chatmeter.context import Context
from chatmeter.training import service as training
from tests.assistants.callers import chunk_rows, file_count
from tests.support.api import Caller

EVERY_SETTING: dict[str, Any] = {
    "name": "Shop helper",
    "instructions": "Answer briefly, in the shop's friendly voice.",
    "provider": "openai",
    "model": "gpt-4o-mini",
    "temperature": 0.7,
    "max_tokens": 300,
    "passages": 5,
    "context_budget": 1200,
    "welcome_message": "Hello! Ask me about orders and delivery.",
    "widget_title": "Ask the shop",
    "widget_color": "#112233",
    "widget_position": "left",
    "widget_texts": {"subtitle": "Ask about orders", "placeholder": "Your question…"},
    "widget_theme": "dark",
    "allowed_domains": [
        "https://Example.com/",
        "*.example.com",
        "HTTP://Shop.Example.org",
        "example.com",
        "localhost:8080",
    ],
}
NORMALISED_DOMAINS = ["example.com", "*.example.com", "shop.example.org", "localhost:8080"]

# One bad field each; each is refused on create (with a valid name) and on update.
BAD_FIELDS: list[dict[str, Any]] = [
    {"widget_texts": {"greeting": "Hi"}},  # not one of the widget's texts
    {"widget_texts": {"subtitle": "x" * 201}},
    {"widget_texts": {"subtitle": 5}},
    {"widget_texts": ["subtitle"]},
    {"widget_texts": {"subtitle": "a\u0000b"}},
    {"widget_theme": "sepia"},
    {"name": ""},
    {"name": "   "},
    {"name": "x" * 101},
    {"name": 5},
    {"name": ["Helper"]},
    {"instructions": "x" * 4001},
    {"instructions": 5},
    {"provider": "anthropic"},
    {"provider": ""},
    {"provider": "LOCAL"},
    {"model": "m" * 101},
    {"daily_token_cap": -1},
    {"daily_token_cap": "1000"},
    {"monthly_token_cap": -1},
    {"monthly_token_cap": "5000"},
    {"monthly_token_cap": 1_000_000_001},
    {"monthly_token_cap": 2.5},
    {"monthly_token_cap": True},
    {"turns_per_conversation": 10_001},
    {"show_sources": "all"},
    {"temperature": "0.5"},
    {"temperature": -0.1},
    {"temperature": 2.01},
    {"temperature": True},
    {"max_tokens": 1.5},
    {"max_tokens": 100.0},
    {"max_tokens": "100"},
    {"max_tokens": 15},
    {"max_tokens": 2049},
    {"max_tokens": False},
    {"passages": 0},
    {"passages": 11},
    {"passages": 2.5},
    {"context_budget": 49},
    {"context_budget": 8001},
    {"context_budget": "400"},
    {"welcome_message": "w" * 501},
    {"widget_title": "t" * 61},
    {"widget_color": "blue"},
    {"widget_color": "#12345"},
    {"widget_color": "#1234567"},
    {"widget_color": "112233"},
    {"widget_color": "#gg0000"},
    {"widget_position": "top"},
    {"widget_position": "Left"},
    {"allowed_domains": "example.com"},
    {"allowed_domains": ["not a domain"]},
    {"allowed_domains": ["example..com"]},
    {"allowed_domains": ["-example.com"]},
    {"allowed_domains": ["https://example.com/some/page"]},
    {"allowed_domains": ["*"]},
    {"allowed_domains": ["*.*.example.com"]},
    {"allowed_domains": [""]},
    {"allowed_domains": [5]},
    {"allowed_domains": [f"shop{i}.example.com" for i in range(51)]},
    {"colour": "#112233"},
    {"public_key": "pk_chosen_by_me"},
    {"index_version": 7},
    {"account_id": 2},
]


def bad_id(case: dict[str, Any]) -> str:
    ((field, value),) = case.items()
    return f"{field}={str(value)[:20]!r}"


def assert_invalid(response: Any) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"]


def test_an_assistant_keeps_every_setting(ctx: Context, alice: Caller) -> None:
    response = alice.client.post("/api/v1/assistants", json=EVERY_SETTING)
    assert response.status_code == 201, response.text
    created = response.json()
    expected = EVERY_SETTING | {"allowed_domains": NORMALISED_DOMAINS}
    assert {field: created[field] for field in EVERY_SETTING} == expected
    assert created["public_key"].startswith("pk_")
    assert alice.client.get(f"/api/v1/assistants/{created['id']}").json() == created
    assert alice.client.get("/api/v1/assistants").json() == [created]
    with ctx.db.read() as session:
        found = assistants.by_public_key(session, public_key=created["public_key"])
        assert found is not None and found.id == created["id"]
        assert found.account_id == alice.account_id


def test_a_name_alone_makes_an_assistant_with_the_defaults(alice: Caller) -> None:
    created = alice.new_assistant(name="  Help Center  ")
    assert created["name"] == "Help Center"
    assert created["provider"] == "local"
    assert (
        created["temperature"],
        created["max_tokens"],
        created["passages"],
        created["context_budget"],
    ) == (0.2, 160, 4, 500)
    assert created["instructions"] and created["welcome_message"]
    assert created["widget_title"] == "Help Center"  # falls back to the name
    assert (created["widget_color"], created["widget_position"]) == ("#2563eb", "right")
    assert created["allowed_domains"] == []
    assert (created["widget_texts"], created["widget_theme"]) == ({}, "auto")


def test_a_blank_widget_text_gives_the_default_back(alice: Caller) -> None:
    created = alice.new_assistant(widget_texts={"subtitle": "Ask us", "placeholder": "Type"})
    changed = alice.client.patch(
        f"/api/v1/assistants/{created['id']}",
        json={"widget_texts": {"subtitle": "  ", "placeholder": " Type here "}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["widget_texts"] == {"placeholder": "Type here"}


def test_update_changes_only_the_fields_sent(ctx: Context, alice: Caller) -> None:
    created = alice.new_assistant(**EVERY_SETTING)
    ctx.clock.advance(minutes=5)
    response = alice.client.patch(
        f"/api/v1/assistants/{created['id']}",
        json={
            "name": "Renamed",
            "temperature": 1,
            "passages": 2,
            "widget_position": "right",
            "allowed_domains": ["https://www.Example.net/"],
        },
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert updated["temperature"] == 1.0 and isinstance(updated["temperature"], float)
    assert (updated["passages"], updated["widget_position"]) == (2, "right")
    assert updated["allowed_domains"] == ["www.example.net"]
    unchanged = (
        "instructions",
        "provider",
        "model",
        "max_tokens",
        "context_budget",
        "welcome_message",
        "widget_title",
        "widget_color",
        "public_key",
        "created_at",
    )
    assert {f: updated[f] for f in unchanged} == {f: created[f] for f in unchanged}
    assert updated["updated_at"] > created["updated_at"]
    assert alice.client.get(f"/api/v1/assistants/{created['id']}").json() == updated


def test_update_can_clear_the_domains_and_an_empty_update_changes_nothing(alice: Caller) -> None:
    created = alice.new_assistant(allowed_domains=["example.com"])
    path = f"/api/v1/assistants/{created['id']}"
    assert alice.client.patch(path, json={}).json() == created
    cleared = alice.client.patch(path, json={"allowed_domains": []}).json()
    assert cleared["allowed_domains"] == []


@pytest.mark.parametrize("bad", BAD_FIELDS, ids=bad_id)
def test_bad_settings_are_refused_on_create_and_update_and_nothing_is_written(
    alice: Caller, bad: dict[str, Any]
) -> None:
    assert_invalid(alice.client.post("/api/v1/assistants", json={"name": "Helper"} | bad))
    assert alice.client.get("/api/v1/assistants").json() == []
    created = alice.new_assistant(**EVERY_SETTING)
    path = f"/api/v1/assistants/{created['id']}"
    assert_invalid(alice.client.patch(path, json=bad))
    assert alice.client.get("/api/v1/assistants").json() == [created]


@pytest.mark.parametrize(
    "body",
    [{}, {"name": None}, ["Helper"], "Helper", None],
    ids=["no name", "null name", "a list", "a string", "null"],
)
def test_an_assistant_without_a_name_or_an_object_is_refused(alice: Caller, body: Any) -> None:
    assert_invalid(alice.client.post("/api/v1/assistants", json=body))
    assert alice.client.get("/api/v1/assistants").json() == []


def test_a_temperature_that_is_not_a_number_is_refused(alice: Caller) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        response = alice.client.post(
            "/api/v1/assistants",
            content=f'{{"name": "Helper", "temperature": {literal}}}',
            headers={"content-type": "application/json"},
        )
        assert_invalid(response)
    assert alice.client.get("/api/v1/assistants").json() == []


def test_rotating_the_public_key_retires_the_old_one(ctx: Context, alice: Caller) -> None:
    created = alice.new_assistant()
    response = alice.client.post(f"/api/v1/assistants/{created['id']}/public-key")
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["public_key"].startswith("pk_")
    assert rotated["public_key"] != created["public_key"]
    assert {k: v for k, v in rotated.items() if k not in ("public_key", "updated_at")} == {
        k: v for k, v in created.items() if k not in ("public_key", "updated_at")
    }
    with ctx.db.read() as session:
        assert assistants.by_public_key(session, public_key=created["public_key"]) is None
        found = assistants.by_public_key(session, public_key=rotated["public_key"])
        assert found is not None and found.id == created["id"]
    assert alice.client.get(f"/api/v1/assistants/{created['id']}").json() == rotated


def test_public_keys_are_unguessable_and_unknown_keys_resolve_to_nothing(
    ctx: Context, alice: Caller
) -> None:
    keys = {alice.new_assistant(name=f"A{i}")["public_key"] for i in range(5)}
    assert len(keys) == 5
    assert all(len(key) >= 24 for key in keys)
    with ctx.db.read() as session:
        for key in ("", "pk_", "pk_nope", "x" * 41, "deleted_1_abcd", "pk_" + "a" * 60):
            assert assistants.by_public_key(session, public_key=key) is None


def train_text(
    ctx: Context, assistant_id: int, account_id: int, text: str, filename: str = "notes.txt"
) -> int:
    """Queue and process a small text file through the service; return the file's id."""
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=account_id, assistant_id=assistant_id
        )
        file_id = training.upload(
            uow.session,
            assistant=assistant,
            filename=filename,
            data=text.encode(),
            max_bytes=ctx.settings.max_upload_bytes,
            now=ctx.clock.now(),
        ).file.id
        uow.commit()
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    return file_id


@pytest.mark.model
def test_deleting_an_assistant_removes_it_with_its_files_and_chunks(
    ctx: Context, alice: Caller
) -> None:
    doomed = alice.new_assistant(name="Doomed")
    kept = alice.new_assistant(name="Kept")
    train_text(ctx, doomed["id"], alice.account_id, "Returns are accepted within 30 days.")
    kept_file = train_text(ctx, kept["id"], alice.account_id, "Delivery takes two days.")
    kept_chunks = chunk_rows(ctx, assistant_id=kept["id"])
    assert chunk_rows(ctx, assistant_id=doomed["id"]) and kept_chunks

    path = f"/api/v1/assistants/{doomed['id']}"
    response = alice.client.delete(path)
    assert response.status_code == 204 and response.content == b""

    for method, url in [
        ("GET", path),
        ("PATCH", path),
        ("DELETE", path),
        ("POST", f"{path}/public-key"),
        ("GET", f"{path}/files"),
    ]:
        gone = alice.client.request(method, url, json={} if method == "PATCH" else None)
        assert gone.status_code == 404, (method, url)
        assert gone.json()["error"]["code"] == "not_found"
    assert [a["id"] for a in alice.client.get("/api/v1/assistants").json()] == [kept["id"]]
    assert chunk_rows(ctx, assistant_id=doomed["id"]) == []
    assert file_count(ctx, assistant_id=doomed["id"]) == 0
    with ctx.db.read() as session:
        assert assistants.by_public_key(session, public_key=doomed["public_key"]) is None
    # The other assistant is untouched.
    assert chunk_rows(ctx, assistant_id=kept["id"]) == kept_chunks
    kept_status = alice.client.get(f"/api/v1/assistants/{kept['id']}/files/{kept_file}").json()
    assert kept_status["status"] == "ready"


def test_requests_without_a_valid_api_key_are_refused(alice: Caller) -> None:
    created = alice.new_assistant()
    anonymous = alice.client.get("/api/v1/assistants", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    forged = alice.client.get(
        f"/api/v1/assistants/{created['id']}", headers={"Authorization": "Bearer cm_forged_key"}
    )
    assert forged.status_code == 401
    assert anonymous.json()["error"]["code"] == forged.json()["error"]["code"] == "unauthorized"


@pytest.mark.model
def test_accounts_never_see_or_touch_each_others_assistants_or_files(
    ctx: Context, alice: Caller, bob: Caller
) -> None:
    mine = alice.new_assistant(name="Alice's")
    file_id = train_text(ctx, mine["id"], alice.account_id, "Alice's secret price list.")
    theirs = bob.new_assistant(name="Bob's")
    alices = f"/api/v1/assistants/{mine['id']}"
    bobs = f"/api/v1/assistants/{theirs['id']}"
    upload = {"files": ("x.txt", b"Bob's text", "text/plain")}
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", alices, {}),
        ("PATCH", alices, {"json": {"name": "Taken over"}}),
        ("POST", f"{alices}/public-key", {}),
        ("GET", f"{alices}/files", {}),
        ("POST", f"{alices}/files", {"files": upload}),
        ("GET", f"{alices}/files/{file_id}", {}),
        ("DELETE", f"{alices}/files/{file_id}", {}),
        # Alice's file through Bob's own assistant.
        ("GET", f"{bobs}/files/{file_id}", {}),
        ("DELETE", f"{bobs}/files/{file_id}", {}),
        ("DELETE", alices, {}),
    ]
    before_chunks = chunk_rows(ctx, assistant_id=mine["id"])
    for method, url, options in attempts:
        response = bob.client.request(method, url, **options)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "not_found"

    assert [a["id"] for a in bob.client.get("/api/v1/assistants").json()] == [theirs["id"]]
    assert bob.client.get(f"{bobs}/files").json() == []
    assert alice.client.get(alices).json() == mine
    assert [f["id"] for f in alice.client.get(f"{alices}/files").json()] == [file_id]
    assert chunk_rows(ctx, assistant_id=mine["id"]) == before_chunks
    assert file_count(ctx) == 1
