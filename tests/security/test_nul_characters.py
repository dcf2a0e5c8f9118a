"""The NUL character (U+0000) in text a caller sends.

PostgreSQL cannot store it in text (SQLite can), so it used to be a 500 on
PostgreSQL and stored on SQLite. Now every way in refuses it alike, with a
readable message, and nothing is stored or reserved.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.accounts.models import Account
from chatmeter.assistants.models import Assistant
from chatmeter.context import Context
from chatmeter.ledger.models import Hold
from chatmeter.web.app import create_app
from tests.support.accounts import add_tokens
from tests.support.api import Caller

NUL_TEXT = "Opening\x00hours"
PASSWORD = "a long enough password"

# Each API body with a text field, valid except for the one field that gets the NUL.
API_BODIES: list[tuple[str, str, dict[str, Any], str]] = [
    ("PATCH", "/api/v1/account", {}, "name"),
    ("POST", "/api/v1/assistants", {"name": "Helper"}, "name"),
    ("POST", "/api/v1/assistants", {"name": "Helper"}, "instructions"),
    ("POST", "/api/v1/assistants", {"name": "Helper"}, "model"),
    ("POST", "/api/v1/assistants", {"name": "Helper"}, "welcome_message"),
    ("POST", "/api/v1/assistants", {"name": "Helper"}, "widget_title"),
    ("PATCH", "/api/v1/assistants/{bot}", {}, "instructions"),
    ("POST", "/api/v1/holds", {"tokens": 10}, "key"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), API_BODIES)
def test_the_api_refuses_text_with_a_nul_character(
    alice: Caller, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    bot = alice.new_assistant(name="Shop")
    before = alice.client.get("/api/v1/assistants").json()

    response = alice.client.request(
        method, path.format(bot=bot["id"]), json=body | {field: NUL_TEXT}
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and field in error["message"]
    assert alice.client.get("/api/v1/assistants").json() == before
    assert alice.client.get("/api/v1/account").json()["name"] != NUL_TEXT


@pytest.mark.parametrize("field", ["message", "conversation_id"])
def test_a_visitor_sending_a_nul_character_is_refused_and_nothing_is_reserved(
    ctx: Context, alice: Caller, app_client: TestClient, field: str
) -> None:
    """On PostgreSQL the turn used to run, then fail to store the exchange: a 500 for the
    visitor and a hold left pending, so the generated tokens were never charged."""
    bot = alice.new_assistant(name="Shop", max_tokens=16, temperature=0)
    add_tokens(ctx, alice.account_id, 10_000)
    body = {"message": "When do you open?"} | {field: NUL_TEXT}

    response = app_client.post(f"/api/v1/public/{bot['public_key']}/chat", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    kinds = [e["kind"] for e in alice.client.get("/api/v1/ledger").json()["entries"]]
    assert kinds == ["grant"]


@pytest.mark.parametrize("key", ["pk_%00", "pk_abc%00def", "pk_%C3%A9t%C3%A9"])
def test_a_public_key_that_cannot_be_one_is_an_unknown_assistant(
    app_client: TestClient, key: str
) -> None:
    """Anyone could send it: it was a 500 on PostgreSQL, the query being run with it."""
    widget = app_client.get(f"/api/v1/public/{key}/widget")
    chat = app_client.post(f"/api/v1/public/{key}/chat", json={"message": "Hello?"})
    elsewhere = [
        app_client.get(f"/api/v1/public/{k}/widget", headers={"Origin": "https://shop.example"})
        for k in (key, "pk_nosuchassistant")
    ]

    assert (widget.status_code, widget.content) == (404, b"")
    assert elsewhere[0].status_code == elsewhere[1].status_code
    assert chat.status_code == 503, chat.text
    assert chat.json()["error"]["code"] == "unavailable"


# --- the panel ----------------------------------------------------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _post_form(browser: TestClient, page: str, action: str, fields: dict[str, str]) -> Any:
    token = CSRF.search(browser.get(page).text)
    assert token, f"no CSRF token on {page}"
    return browser.post(action, data={"csrf_token": token[1]} | fields, follow_redirects=False)


def test_the_panels_forms_refuse_a_nul_character_with_a_message(ctx: Context) -> None:
    """Signing up, signing in, asking for a reset link and renaming the account were a
    500 on PostgreSQL when a field held a NUL."""
    browser = TestClient(create_app(ctx), base_url="http://127.0.0.1")
    owner = {"email": "owner@example.com", "password": PASSWORD, "timezone": "UTC"}
    forms = [
        ("/panel/sign-up", "/panel/sign-up", owner | {"name": NUL_TEXT}),
        ("/panel/sign-in", "/panel/sign-in", {"email": "a\x00@example.com", "password": "x"}),
        ("/panel/password/forgot", "/panel/password/forgot", {"email": "a\x00@example.com"}),
    ]
    for page, action, fields in forms:
        response = _post_form(browser, page, action, fields)
        assert response.status_code == 422, (action, response.text)
        assert "must not contain the NUL character" in response.text, action

    signed_up = _post_form(browser, "/panel/sign-up", "/panel/sign-up", owner | {"name": "Shop"})
    assert signed_up.status_code == 303, signed_up.text
    renamed = _post_form(
        browser, "/panel/settings", "/panel/settings/account", {"name": NUL_TEXT, "timezone": "UTC"}
    )
    assert renamed.status_code == 422, renamed.text
    assert "must not contain the NUL character" in renamed.text
    with ctx.db.read() as session:
        assert [a.name for a in session.scalars(select(Account))] == ["Shop"]


@pytest.mark.parametrize("field", ["message", "conversation_id"])
def test_the_test_chat_refuses_a_nul_character_and_reserves_nothing(
    ctx: Context, field: str
) -> None:
    """The panel's test chat used to run the whole turn on PostgreSQL and then fail to
    store it, leaving its hold pending (a NUL in the message), or fail on the lookup of
    the conversation (a NUL in its id)."""
    browser = TestClient(create_app(ctx), base_url="http://127.0.0.1")
    owner = {"email": "owner@example.com", "password": PASSWORD, "timezone": "UTC"}
    _post_form(browser, "/panel/sign-up", "/panel/sign-up", owner | {"name": "Shop"})
    created = _post_form(
        browser,
        "/panel/assistants/new",
        "/panel/assistants/new",
        {"name": "Helper", "max_tokens": "16", "temperature": "0"},
    )
    assert created.status_code == 303, created.text
    with ctx.db.read() as session:
        account = session.scalars(select(Account)).one()
        bot = session.scalars(select(Assistant)).one()
    add_tokens(ctx, account.id, 10_000)
    token = CSRF.search(browser.get("/panel/dashboard").text)
    assert token

    response = browser.post(
        f"/panel/assistants/{bot.id}/test-chat",
        json={"message": "When do you open?"} | {field: NUL_TEXT},
        headers={"X-CSRF-Token": token[1]},
    )

    assert response.status_code == 422, response.text
    assert "must not contain the NUL character" in response.json()["error"]["message"]
    with ctx.db.read() as session:
        assert session.scalars(select(Hold)).all() == []
