"""The REST API: numbers, idempotency, bad input and isolation between accounts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatmeter.context import Context
from chatmeter.ledger.models import LedgerEntry
from chatmeter.notifications.models import OutboxMessage
from tests.support.accounts import add_tokens
from tests.support.api import Caller
from tests.support.ledger import assert_ledger_clean


def entries(ctx: Context) -> int:
    with ctx.db.read() as session:
        return session.scalar(select(func.count()).select_from(LedgerEntry)) or 0


def test_balance_shows_the_ledger_figures(ctx: Context, alice: Caller) -> None:
    assert alice.client.post("/api/v1/purchases", json={"packages": 2}).status_code == 201
    hold = alice.client.post("/api/v1/holds", json={"tokens": 700}).json()
    alice.client.post(
        f"/api/v1/holds/{hold['id']}/settle", json={"context": 350, "generation": 150}
    )
    body = alice.client.get("/api/v1/balance").json()
    assert body["balance"] == 10_000 - 500
    assert body["available"] == 9_500
    assert body["reserved"] == 0
    assert body["limit"] == 10_000
    assert body["used_this_month"] == 500
    assert body["renews_at"].startswith("2026-12-01T00:00:00")
    assert body["active"] is True and body["low"] is False


def test_purchase_is_idempotent_by_header(ctx: Context, alice: Caller) -> None:
    headers = {"Idempotency-Key": "buy-1"}
    first = alice.client.post("/api/v1/purchases", json={"packages": 3}, headers=headers)
    again = alice.client.post("/api/v1/purchases", json={"packages": 3}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["tokens"] == 15_000
    assert alice.client.get("/api/v1/balance").json()["balance"] == 15_000
    other = alice.client.post("/api/v1/purchases", json={"packages": 4}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert alice.client.get("/api/v1/subscription").json()["packages"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {"packages": 0},
        {"packages": -1},
        {"packages": 1.5},
        {"packages": "2"},
        {"packages": True},
        {"packages": 1001},
        {"packages": 10**30},
        {},
        {"packages": None},
        {"packages": 1, "extra": 1},
        [1],
    ],
)
def test_bad_purchases_are_refused_and_write_nothing(
    ctx: Context, alice: Caller, body: object
) -> None:
    before = entries(ctx)
    response = alice.client.post("/api/v1/purchases", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert response.json()["error"]["message"]
    assert entries(ctx) == before
    assert alice.client.get("/api/v1/invoices").json() == []


def test_malformed_and_oversized_bodies(ctx: Context, alice: Caller) -> None:
    broken = alice.client.post(
        "/api/v1/holds", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "invalid_input"
    huge = alice.client.post(
        "/api/v1/holds",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"


def test_holds_reserve_settle_release(ctx: Context, alice: Caller) -> None:
    add_tokens(ctx, alice.account_id, 1000)
    created = alice.client.post("/api/v1/holds", json={"tokens": 600, "ttl_seconds": 30})
    assert created.status_code == 201
    hold = created.json()
    assert hold["status"] == "pending" and hold["tokens"] == 600
    refused = alice.client.post("/api/v1/holds", json={"tokens": 401})
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_tokens"
    over = alice.client.post(
        f"/api/v1/holds/{hold['id']}/settle", json={"context": 600, "generation": 1}
    )
    assert over.status_code == 422
    settled = alice.client.post(
        f"/api/v1/holds/{hold['id']}/settle", json={"context": 200, "generation": 100}
    )
    assert settled.json()["status"] == "settled"
    again = alice.client.post(f"/api/v1/holds/{hold['id']}/release")
    assert again.status_code == 409
    second = alice.client.post("/api/v1/holds", json={"tokens": 100}).json()
    released = alice.client.post(f"/api/v1/holds/{second['id']}/release")
    assert released.json()["status"] == "released"
    assert alice.client.get("/api/v1/balance").json()["available"] == 700


def test_hold_idempotency_key_header(ctx: Context, alice: Caller) -> None:
    add_tokens(ctx, alice.account_id, 1000)
    headers = {"Idempotency-Key": "turn-42"}
    a = alice.client.post("/api/v1/holds", json={"tokens": 300}, headers=headers).json()
    b = alice.client.post("/api/v1/holds", json={"tokens": 300}, headers=headers).json()
    assert a["id"] == b["id"]
    conflict = alice.client.post("/api/v1/holds", json={"tokens": 301}, headers=headers)
    assert conflict.status_code == 409
    assert alice.client.get("/api/v1/balance").json()["reserved"] == 300


@pytest.mark.parametrize(
    "body",
    [
        {"tokens": 0},
        {"tokens": -5},
        {"tokens": 2.5},
        {"tokens": "ten"},
        {"tokens": 10**15},
        {"tokens": 10, "ttl_seconds": 0},
        {"tokens": 10, "ttl_seconds": 10**9},
    ],
)
def test_bad_holds_are_refused(ctx: Context, alice: Caller, body: object) -> None:
    add_tokens(ctx, alice.account_id, 1000)
    before = entries(ctx)
    response = alice.client.post("/api/v1/holds", json=body)
    assert response.status_code == 422
    assert entries(ctx) == before


def test_ledger_pages_newest_first(ctx: Context, alice: Caller) -> None:
    for n in range(5):
        add_tokens(ctx, alice.account_id, 10 + n, key=f"g{n}")
    page = alice.client.get("/api/v1/ledger", params={"limit": 2}).json()
    assert [e["available_delta"] for e in page["entries"]] == [14, 13]
    assert page["entries"][0]["balance_after"] == sum(range(10, 15))
    rest = alice.client.get(
        "/api/v1/ledger", params={"limit": 10, "before": page["next_before"]}
    ).json()
    assert [e["available_delta"] for e in rest["entries"]] == [12, 11, 10]
    assert rest["next_before"] is None
    assert alice.client.get("/api/v1/ledger", params={"limit": 0}).status_code == 422


def test_subscription_change_and_cancel(ctx: Context, alice: Caller) -> None:
    alice.client.post("/api/v1/purchases", json={"packages": 2})
    changed = alice.client.patch("/api/v1/subscription", json={"packages": 5}).json()
    assert (changed["packages"], changed["next_packages"]) == (2, 5)
    assert changed["monthly_tokens"] == 25_000
    assert changed["monthly_price"] == "45.00"
    assert alice.client.patch("/api/v1/subscription", json={"packages": 0}).status_code == 422
    cancelled = alice.client.post("/api/v1/subscription/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["next_packages"] == 0
    assert alice.client.get("/api/v1/balance").json()["balance"] == 10_000


def test_account_settings_and_contact_email_change(ctx: Context, alice: Caller) -> None:
    assert alice.client.get("/api/v1/account").json()["contact_email"] == "alice@example.com"
    for bad in (
        {"timezone": "Mars/Olympus"},
        {"contact_email": "not-an-email"},
        {"timezone": 5},
        {"contact_email": ""},
    ):
        response = alice.client.patch("/api/v1/account", json=bad)
        assert response.status_code == 422, bad
        assert response.json()["error"]["message"]
    updated = alice.client.patch(
        "/api/v1/account", json={"contact_email": "billing@example.com", "timezone": "Asia/Kolkata"}
    ).json()
    assert (updated["contact_email"], updated["timezone"]) == (
        "billing@example.com",
        "Asia/Kolkata",
    )
    with ctx.db.read() as session:
        sent_to = sorted(
            session.scalars(
                select(OutboxMessage.to_address).where(
                    OutboxMessage.kind == "contact_email_changed"
                )
            )
        )
    assert sent_to == ["alice@example.com", "billing@example.com"]


def test_requests_without_a_valid_key_are_refused(app_client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer cm_nope_nope"}, {"Authorization": "Basic x"}):
        response = app_client.get("/api/v1/balance", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_accounts_never_see_each_others_data(ctx: Context, alice: Caller, bob: Caller) -> None:
    add_tokens(ctx, alice.account_id, 1000)
    add_tokens(ctx, bob.account_id, 50)
    hold = alice.client.post("/api/v1/holds", json={"tokens": 100}).json()
    alice.client.post("/api/v1/purchases", json={"packages": 1})
    assert bob.client.get(f"/api/v1/holds/{hold['id']}").status_code == 404
    assert (
        bob.client.post(
            f"/api/v1/holds/{hold['id']}/settle", json={"context": 1, "generation": 1}
        ).status_code
        == 404
    )
    assert bob.client.post(f"/api/v1/holds/{hold['id']}/release").status_code == 404
    assert bob.client.get("/api/v1/invoices").json() == []
    assert {e["available_delta"] for e in bob.client.get("/api/v1/ledger").json()["entries"]} == {
        50
    }
    assert bob.client.get("/api/v1/balance").json()["balance"] == 50
    assert alice.client.get(f"/api/v1/holds/{hold['id']}").json()["status"] == "pending"
    assert_ledger_clean(ctx)


def test_openapi_is_published(app_client: TestClient) -> None:
    spec = app_client.get("/api/v1/openapi.json").json()
    for path in (
        "/api/v1/balance",
        "/api/v1/purchases",
        "/api/v1/subscription",
        "/api/v1/subscription/cancel",
        "/api/v1/invoices",
        "/api/v1/ledger",
        "/api/v1/holds",
        "/api/v1/holds/{hold_id}/settle",
        "/api/v1/holds/{hold_id}/release",
        "/api/v1/account",
    ):
        assert path in spec["paths"], path
