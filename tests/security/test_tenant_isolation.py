"""Tenant isolation, route by route, from the app's own route table.

Account B calls every API and panel route with account A's real ids and must get
the very answer an id that does not exist gets, see nothing of A's and change
nothing of A's; a caller with no key or session gets nothing at all. Which
routes there are comes from ``create_app(ctx).routes``; how each is called comes
from ``tests.security.routes.COVERAGE``, and a route missing there fails
``test_every_route_has_an_isolation_rule``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.security.matrix import (
    Findings,
    World,
    another_account,
    leaks,
    route_table,
    strangers,
)
from tests.security.routes import (
    COVERAGE,
    app_routes,
    missing_rule_message,
    unknown_kinds_lines,
)
from tests.security.tenants import Tenant, changes, open_tenant, snapshot
from tests.support.ledger import assert_ledger_clean


def test_every_route_has_an_isolation_rule() -> None:
    routes = route_table()
    missing = [r for r in routes if r.key not in COVERAGE]
    assert not missing, missing_rule_message(missing)
    guarded = [r for r in routes if COVERAGE[r.key].guard != "public"]
    assert not unknown_kinds_lines(guarded), "\n".join(unknown_kinds_lines(guarded))


def test_every_rule_names_a_route_that_exists() -> None:
    """A rule left behind by a removed or renamed route is a rule that tests nothing."""
    keys = {r.key for r in route_table()}
    stale = sorted(set(COVERAGE) - keys)
    assert not stale, f"remove or rename these entries of COVERAGE: {stale}"


@pytest.fixture
def world(ctx: Context) -> World:
    app = create_app(ctx)
    return World(ctx, app, open_tenant(ctx, app, "Aardvark"), open_tenant(ctx, app, "Bison"))


@pytest.mark.model
def test_tenant_isolation_matrix(world: World) -> None:
    """A stranger, then account B, on every guarded route with account A's ids."""
    found = Findings()
    strangers(world, found)
    another_account(world, found)
    assert not found, found.report()
    assert_ledger_clean(world.ctx)


@pytest.mark.model
def test_ids_and_keys_in_a_body_are_the_callers_own(world: World) -> None:
    """A's conversation id sent to B's assistant, by a visitor or in B's test chat, starts
    a new conversation: none of A's messages reaches B's prompt (the same context tokens
    as the same first question). A's hold key, purchase key and "Get more tokens" window
    key get B a hold and invoices of B's own. Nothing of A's changes."""
    ctx, a, b = world.ctx, world.a, world.b
    before = snapshot(ctx, a.account_id)
    bot = b.ids(ctx, "assistant_id")[0]

    visitor = TestClient(world.app).post(
        f"/api/v1/public/{b.public_key}/chat",
        json={"message": b.question, "conversation_id": a.conversation},
    )
    tester = b.panel.post(
        f"/panel/assistants/{bot}/test-chat",
        json={"message": b.question, "conversation_id": a.conversation},
        headers={"X-CSRF-Token": b.csrf()},
    )
    hold = b.api.post("/api/v1/holds", json={"tokens": 100, "key": a.keys["hold"]})
    invoice = b.api.post(
        "/api/v1/purchases", json={"packages": 1}, headers={"Idempotency-Key": a.keys["purchase"]}
    )
    window = b.panel.post(
        "/panel/tokens",
        json={"packages": 1, "key": a.keys["window"]},
        headers={"X-CSRF-Token": b.csrf()},
    )

    assert visitor.status_code == 200, visitor.text
    assert tester.status_code == 200, tester.text
    started = [visitor.json()["conversation_id"], _sse(tester)[0]["conversation_id"]]
    assert not {a.conversation, b.conversation} & set(started)
    first, *probes = b.ids(ctx, "conversation_id")
    assert len(probes) == 2
    for probe in probes:  # the same first question, with no history in the prompt
        assert _answer_context(b, probe) == _answer_context(b, first)
    assert hold.status_code == 201, hold.text
    assert hold.json()["id"] not in a.ids(ctx, "hold_id")
    assert (invoice.status_code, window.status_code) == (201, 200), invoice.text + window.text
    assert invoice.json()["id"] not in a.ids(ctx, "invoice_id")
    assert len(b.ids(ctx, "invoice_id")) == 4  # the world's two purchases and these two
    for response in (visitor, tester, invoice, window):  # a hold shows the key B sent
        assert not leaks(response, a)
    assert not changes(before, snapshot(ctx, a.account_id))
    assert_ledger_clean(ctx)


def _answer_context(tenant: Tenant, conversation_id: int) -> list[int]:
    """The context tokens of each answer in one of the tenant's conversations."""
    body = tenant.api.get(f"/api/v1/conversations/{conversation_id}").json()
    return [m["context_tokens"] for m in body["messages"] if m["role"] == "assistant"]


def _sse(response: httpx.Response) -> list[dict[str, Any]]:
    return [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]


def test_a_new_route_without_a_rule_is_named_with_the_line_to_add() -> None:
    """What another engineer sees after adding a route: the exact lines to paste."""
    router = APIRouter(prefix="/api/v1")
    router.add_api_route("/webhooks/{webhook_id}", lambda webhook_id: None, methods=["DELETE"])
    app = FastAPI()
    app.include_router(router)
    routes = [r for r in app_routes(app) if r.key not in COVERAGE]

    message = missing_rule_message(routes)

    assert [r.key for r in routes] == ["DELETE /api/v1/webhooks/{webhook_id}"]
    assert '"DELETE /api/v1/webhooks/{webhook_id}": api(),' in message
    assert '"webhook_id": IdKind(TheModel),' in message
