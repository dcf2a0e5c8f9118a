"""``chatmeter keys``: the operator lists, makes and revokes an account's API keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.test_cli import Operator


@pytest.fixture
def operator(db_url: str, tmp_path: Path) -> Operator:
    return Operator(
        {
            "CHATMETER_DATABASE_URL": db_url,
            "CHATMETER_ENV": "test",
            "CHATMETER_DATA_DIR": str(tmp_path / "var"),
            "CHATMETER_NOW": "2026-11-15T12:00:00Z",
        }
    )


def api(ctx: Context, key: str) -> TestClient:
    return TestClient(create_app(ctx), headers={"Authorization": f"Bearer {key}"})


def test_keys_through_the_cli(operator: Operator, ctx: Context) -> None:
    account = str(operator.json("accounts", "create", "--email", "shop@example.com")["account_id"])
    (first,) = operator.json("keys", "list", "--account", account)
    assert (first["name"], first["scope"], first["active"]) == ("default", "all", True)
    assert "key" not in first

    made = operator.json("keys", "create", "--account", account, "--name", "Reporting")
    assert made["scope"] == "read" and made["key"].startswith(made["prefix"])
    client = api(ctx, made["key"])
    assert client.get("/api/v1/balance").status_code == 200
    assert client.post("/api/v1/purchases", json={"packages": 1}).status_code == 403

    text = operator.run("keys", "list", "--account", account)
    assert "Reporting" in text and "read" in text and made["key"] not in text
    revoked = operator.run("keys", "revoke", "--account", account, "--key", str(made["id"]))
    assert revoked.strip() == f"api key {made['id']} revoked"
    assert client.get("/api/v1/balance").status_code == 401
    assert "revoked" in operator.run("keys", "list", "--account", account)

    full = operator.run(
        "keys", "create", "--account", account, "--name", "Backend", "--scope", "all"
    )
    assert "(all) created" in full and "api key: cm_" in full


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--name", "x", "--scope", "admin"], "choose a scope"),
        (["create", "--name", "  "], "name the key"),
        (["revoke", "--key", "999"], "no such API key"),
    ],
)
def test_bad_key_commands_say_why(operator: Operator, args: list[str], message: str) -> None:
    account = str(operator.json("accounts", "create", "--email", "shop@example.com")["account_id"])
    output = operator.run("keys", *args[:1], "--account", account, *args[1:], code=1)
    assert message in output
    assert len(operator.json("keys", "list", "--account", account)) == 1


def test_another_accounts_key_is_not_revoked(operator: Operator) -> None:
    first = str(operator.json("accounts", "create", "--email", "a@example.com")["account_id"])
    second = str(operator.json("accounts", "create", "--email", "b@example.com")["account_id"])
    (key,) = operator.json("keys", "list", "--account", second)
    operator.run("keys", "revoke", "--account", first, "--key", str(key["id"]), code=1)
    assert operator.json("keys", "list", "--account", second)[0]["active"] is True
