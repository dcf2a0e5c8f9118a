"""API keys against a careless or hostile integration (issue #8, item 8): a read-only key
writes nothing, a key cannot make a wider key, a revoked key stops at once, another
account's keys cannot be seen or revoked, and a key's secret is shown once only.

Over HTTP against the real app, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from tests.support.accounts import balance_of
from tests.support.api import Caller


def with_key(caller: Caller, key: str) -> TestClient:
    return TestClient(caller.client.app, headers={"Authorization": f"Bearer {key}"})


def make_key(caller: Caller, **body: Any) -> dict[str, Any]:
    response = caller.client.post("/api/v1/keys", json={"name": "integration"} | body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_key_is_shown_once_and_works(alice: Caller) -> None:
    made = make_key(alice, name="Shop backend", scope="all")
    assert made["key"].startswith(made["prefix"]) and made["prefix"].startswith("cm_")
    assert (made["name"], made["scope"], made["active"]) == ("Shop backend", "all", True)
    listed = alice.client.get("/api/v1/keys").json()
    assert made["key"] not in str(listed)
    assert "key" not in listed[0] and "secret_hash" not in listed[0]
    assert {k["name"] for k in listed} == {"default", "Shop backend"}
    assert with_key(alice, made["key"]).get("/api/v1/balance").status_code == 200


WRITES = [
    ("post", "/api/v1/purchases", {"packages": 1}),
    ("post", "/api/v1/holds", {"tokens": 10}),
    ("patch", "/api/v1/account", {"name": "Taken over"}),
    ("patch", "/api/v1/subscription", {"packages": 2}),
    ("post", "/api/v1/subscription/cancel", None),
    ("post", "/api/v1/assistants", {"name": "Spam"}),
    ("post", "/api/v1/keys", {"name": "wider", "scope": "all"}),
    ("post", "/api/v1/keys", {"name": "same", "scope": "read"}),
]


def test_a_read_only_key_writes_nothing(ctx: Context, alice: Caller) -> None:
    helper = alice.new_assistant()
    reader = with_key(alice, make_key(alice, scope="read")["key"])
    for method, path, body in [
        *WRITES,
        ("delete", f"/api/v1/assistants/{helper['id']}", None),
        ("post", f"/api/v1/assistants/{helper['id']}/public-key", None),
        ("post", "/api/v1/keys/1/revoke", None),
    ]:
        response = reader.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "insufficient_scope"
        assert error["message"] == "this API key is read-only (scope read): it may only read"
    upload = reader.post(
        f"/api/v1/assistants/{helper['id']}/files",
        files={"files": ("a.txt", b"Some text to learn from.", "text/plain")},
    )
    assert upload.status_code == 403
    for path in ("/api/v1/balance", "/api/v1/ledger", "/api/v1/assistants", "/api/v1/keys"):
        assert reader.get(path).status_code == 200, path
    assert balance_of(ctx, alice.account_id).available == 0
    assert alice.client.get(f"/api/v1/assistants/{helper['id']}").json()["name"] == helper["name"]
    assert len(alice.client.get("/api/v1/keys").json()) == 2  # nothing made by the reader
    assert alice.client.get("/api/v1/account").json()["name"] != "Taken over"


def test_a_revoked_key_stops_at_once(alice: Caller) -> None:
    made = make_key(alice, scope="all")
    client = with_key(alice, made["key"])
    assert client.get("/api/v1/balance").status_code == 200
    revoked = alice.client.post(f"/api/v1/keys/{made['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"]
    refused = client.get("/api/v1/balance")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    again = alice.client.post(f"/api/v1/keys/{made['id']}/revoke")  # changes nothing
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]


def test_a_key_may_revoke_itself(alice: Caller) -> None:
    made = make_key(alice, scope="all")
    client = with_key(alice, made["key"])
    assert client.post(f"/api/v1/keys/{made['id']}/revoke").status_code == 200
    assert client.get("/api/v1/balance").status_code == 401


def test_another_accounts_keys_are_neither_seen_nor_revoked(alice: Caller, bob: Caller) -> None:
    bobs = make_key(bob, scope="all")
    assert bobs["id"] not in {k["id"] for k in alice.client.get("/api/v1/keys").json()}
    refused = alice.client.post(f"/api/v1/keys/{bobs['id']}/revoke")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    assert with_key(bob, bobs["key"]).get("/api/v1/balance").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "all"}, "name"),
        ({"name": "", "scope": "all"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "admin", "scope": "admin"}, "scope"),
        ({"name": "admin", "scope": None}, "scope"),
        ({"name": "ok", "extra": 1}, "extra"),
    ],
)
def test_bad_key_requests_make_nothing(alice: Caller, body: dict[str, Any], field: str) -> None:
    response = alice.client.post("/api/v1/keys", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert field in response.json()["error"]["message"]
    assert len(alice.client.get("/api/v1/keys").json()) == 1


def test_an_account_has_a_limited_number_of_keys(alice: Caller) -> None:
    from chatmeter.accounts.keys import MAX_ACTIVE_KEYS

    made = [make_key(alice, name=f"k{n}") for n in range(MAX_ACTIVE_KEYS - 1)]
    refused = alice.client.post("/api/v1/keys", json={"name": "one too many"})
    assert refused.status_code == 409
    assert "at most 20 keys in use" in refused.json()["error"]["message"]
    alice.client.post(f"/api/v1/keys/{made[0]['id']}/revoke")
    assert alice.client.post("/api/v1/keys", json={"name": "now fine"}).status_code == 201


def test_last_used_is_written_at_most_once_a_minute(ctx: Context, alice: Caller) -> None:
    made = make_key(alice, scope="read")
    client = with_key(alice, made["key"])

    def last_used() -> str | None:
        (row,) = [k for k in alice.client.get("/api/v1/keys").json() if k["id"] == made["id"]]
        return row["last_used_at"]  # type: ignore[no-any-return]

    assert last_used() is None
    client.get("/api/v1/balance")
    first = last_used()
    assert first is not None
    ctx.clock.advance(seconds=59)
    client.get("/api/v1/balance")
    assert last_used() == first
    ctx.clock.advance(seconds=1)
    client.get("/api/v1/balance")
    assert last_used() != first


def test_the_keys_routes_are_in_the_openapi_schema(alice: Caller) -> None:
    paths = alice.client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/keys", "/api/v1/keys/{key_id}/revoke"} <= set(paths)
