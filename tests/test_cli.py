"""The operator's CLI, driven like an operator would, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from chatmeter.cli import app
from chatmeter.db import Database
from chatmeter.migrate import upgrade


class Operator:
    """Runs ``chatmeter`` commands with a fixed environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    def run(self, *args: str, now: str | None = None, code: int = 0, **env: str) -> str:
        environ = self.env | env | ({"CHATMETER_NOW": now} if now else {})
        result = self.runner.invoke(app, list(args), env=environ)
        assert result.exit_code == code, (args, result.output, result.stderr)
        return result.output if code == 0 else result.output + result.stderr

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kwargs))


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


def test_account_life_through_the_cli(operator: Operator) -> None:
    created = operator.json(
        "accounts", "create", "--email", "shop@example.com", "--timezone", "Europe/Berlin"
    )
    account = str(created["account_id"])
    assert created["api_key"].startswith("cm_")
    bought = operator.json("tokens", "buy", "--account", account, "--packages", "10")
    assert (bought["tokens"], bought["status"]) == (50_000, "paid")
    balance = operator.json("tokens", "balance", "--account", account)
    assert (balance["balance"], balance["limit"], balance["active"]) == (50_000, 50_000, True)
    assert balance["renews_at"] == "2026-11-30 23:00:00+00:00"  # 00:00 in Berlin
    assert "50,000" in operator.run("tokens", "balance", "--account", account)
    operator.run(
        "tokens",
        "adjust",
        "--account",
        account,
        "--tokens",
        "-1000",
        "--reason",
        "refund correction",
    )
    operator.run("tokens", "adjust", "--account", account, "--tokens", "250")
    assert operator.json("tokens", "balance", "--account", account)["balance"] == 49_250
    # The 1st of December in Berlin: one renewal, however often it runs.
    for _ in range(3):
        operator.run("billing", "renew", now="2026-11-30T23:00:01Z")
    invoices = operator.json("invoices", "list", "--account", account)
    assert [(i["kind"], i["status"], i["period"]) for i in invoices] == [
        ("renewal", "paid", "2026-12"),
        ("purchase", "paid", "2026-11"),
    ]
    december = operator.json("tokens", "balance", "--account", account, now="2026-12-02T00:00:00Z")
    assert (december["balance"], december["limit"]) == (50_000 + 250, 50_000)
    operator.run("billing", "cancel", "--account", account)
    assert operator.json("ledger", "verify") == [
        {"account_id": 1, "ok": True, "available": 50_250, "reserved": 0, "problems": []}
    ]


def test_pending_invoices_wait_for_mark_paid(operator: Operator) -> None:
    account = str(operator.json("accounts", "create", "--email", "a@example.com")["account_id"])
    pending = operator.json(
        "tokens",
        "buy",
        "--account",
        account,
        "--packages",
        "2",
        CHATMETER_PAYMENT_AUTO_APPROVE="false",
    )
    assert pending["status"] == "pending"
    assert operator.json("tokens", "balance", "--account", account)["balance"] == 0
    paid = operator.json(
        "invoices", "mark-paid", "--account", account, "--invoice", str(pending["id"])
    )
    assert paid["status"] == "paid"
    assert operator.json("tokens", "balance", "--account", account)["balance"] == 10_000
    again = operator.json(
        "invoices", "mark-paid", "--account", account, "--invoice", str(pending["id"])
    )
    assert again["status"] == "paid"
    assert operator.json("tokens", "balance", "--account", account)["balance"] == 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("accounts", "create", "--email", "nope"), "valid email"),
        (("accounts", "create", "--email", "a@b.com", "--timezone", "Moon/Base"), "time zone"),
        (("tokens", "buy", "--account", "1", "--packages", "0"), "from 1 to 1,000"),
        (("tokens", "buy", "--account", "1", "--packages", "1001"), "from 1 to 1,000"),
        (("tokens", "balance", "--account", "99"), "no such account"),
        (("tokens", "adjust", "--account", "1", "--tokens", "-5"), "only 0 tokens"),
    ],
)
def test_bad_input_gives_a_message_and_changes_nothing(
    operator: Operator, args: tuple[str, ...], message: str, db_url: str
) -> None:
    operator.json("accounts", "create", "--email", "first@example.com")
    output = operator.run(*args, code=1)
    assert message in output
    assert len(operator.json("accounts", "list")) == 1
    assert operator.json("invoices", "list", "--account", "1") == []


def test_now_is_refused_in_production(operator: Operator) -> None:
    output = operator.run(
        "ledger", "verify", code=1, CHATMETER_ENV="production", CHATMETER_SECRET_KEY="x" * 40
    )
    assert "CHATMETER_NOW is refused" in output


def test_ledger_verify_exits_1_on_a_difference(operator: Operator, db_url: str) -> None:
    operator.json("accounts", "create", "--email", "a@example.com")
    operator.run("tokens", "adjust", "--account", "1", "--tokens", "500")
    database = Database(db_url)
    with database.uow() as uow:
        uow.session.execute(text("UPDATE token_balances SET available = 400"))
        uow.commit()
    database.dispose()
    output = operator.run("ledger", "verify", code=1)
    assert "account 1:" in output


def test_the_installed_entry_point_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    env = os.environ | {"CHATMETER_DATABASE_URL": url, "CHATMETER_ENV": "test"}
    done = subprocess.run(
        [sys.executable, "-m", "chatmeter.cli", "jobs", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert {job["name"] for job in json.loads(done.stdout)} == {
        "renewal",
        "hold-expiry",
        "auto-top-up",
        "outbox",
        "webhooks",
        "usage-surge",
        "retention",
        "training",
    }


def test_outbox_shows_and_requeues_emails(operator: Operator) -> None:
    operator.json("accounts", "create", "--email", "a@example.com")
    operator.run("tokens", "buy", "--account", "1", "--packages", "1")
    (receipt,) = operator.json("outbox", "list")
    assert (receipt["kind"], receipt["status"], receipt["to"]) == (
        "purchase_receipt",
        "pending",
        "a@example.com",
    )
    assert operator.json("outbox", "requeue-dead") == {"requeued": 0}
    assert "choose pending, sent or dead" in operator.run("outbox", "list", "--status", "x", code=2)


def test_refunding_an_invoice_removes_its_unspent_tokens_once(operator: Operator) -> None:
    account = str(operator.json("accounts", "create", "--email", "a@example.com")["account_id"])
    other = str(operator.json("accounts", "create", "--email", "b@example.com")["account_id"])
    invoice = operator.json("tokens", "buy", "--account", account, "--packages", "2")
    operator.run("tokens", "adjust", "--account", account, "--tokens", "-3000")

    refunded = operator.json(
        "invoices", "refund", "--account", account, "--invoice", str(invoice["id"])
    )

    assert refunded == {
        "invoice_id": invoice["id"],
        "number": invoice["number"],
        "refunded": "18.00",
        "currency": "EUR",
        "tokens_removed": 7_000,
    }
    assert operator.json("tokens", "balance", "--account", account)["balance"] == 0
    (listed,) = operator.json("invoices", "list", "--account", account)
    assert (listed["status"], listed["refunded"], listed["amount"]) == ("paid", "18.00", "18.00")
    again = operator.run(
        "invoices", "refund", "--account", account, "--invoice", str(invoice["id"]), code=1
    )
    assert "already refunded" in again
    stranger = operator.run(
        "invoices", "refund", "--account", other, "--invoice", str(invoice["id"]), code=1
    )
    assert "no such invoice" in stranger
    assert operator.json("ledger", "verify")[0]["ok"] is True
