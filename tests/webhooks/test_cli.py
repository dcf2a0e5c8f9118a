"""``chatmeter webhooks``, and the monthly cap's option, driven as an operator would."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from chatmeter.webhooks.delivery import MAX_ATTEMPTS, backoff
from chatmeter.webhooks.disabling import DISABLE_AFTER
from tests.support.receiver import receiver
from tests.test_cli import Operator


@pytest.fixture
def operator(db_url: str, tmp_path: Path) -> Operator:
    return Operator(
        {
            "CHATMETER_DATABASE_URL": db_url,
            "CHATMETER_ENV": "test",
            "CHATMETER_DATA_DIR": str(tmp_path / "var"),
            "CHATMETER_NOW": "2026-11-15T12:00:00Z",
            "CHATMETER_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        }
    )


def test_an_operator_manages_an_accounts_endpoints(operator: Operator) -> None:
    account = str(operator.json("accounts", "create", "--email", "shop@example.com")["account_id"])
    with receiver() as inbox:
        made = operator.json(
            "webhooks", "add", "--account", account, "--url", inbox.url,
            "--events", "purchase.paid, balance.low", "--description", "Shop",
        )  # fmt: skip
        assert made["secret"].startswith("whsec_")
        assert made["events"] == ["balance.low", "purchase.paid"]
        endpoint = str(made["id"])
        assert "signing secret (shown once): whsec_" in operator.run(
            "webhooks", "add", "--account", account, "--url", inbox.url + "/2"
        )
        listed = operator.run("webhooks", "list", "--account", account)
        assert "balance.low, purchase.paid" in listed and "all events" in listed
        assert "queued test event evt_" in operator.run(
            "webhooks", "test", "--account", account, "--endpoint", endpoint
        )
        operator.run("tokens", "buy", "--account", account, "--packages", "1")
        ran = json.loads(operator.run("jobs", "run", "webhooks"))
        assert ran["delivered"] == 3  # the test, and the purchase to both endpoints
        log = operator.json("webhooks", "deliveries", "--account", account, "--endpoint", endpoint)
        assert sorted(d["event_type"] for d in log) == ["purchase.paid", "test"]
        assert {d["status"] for d in log} == {"delivered"}
        assert "delivered" in operator.run(
            "webhooks", "deliveries", "--account", account, "--endpoint", endpoint
        )
    paid = [json.loads(r.body) for r in inbox.received if r.path == "/hooks"]
    assert [e["type"] for e in paid] == ["test", "purchase.paid"]
    assert paid[1]["data"]["invoice"]["tokens"] == 5000

    off = operator.json(
        "webhooks", "update", "--account", account, "--endpoint", endpoint, "--disable"
    )
    assert off["enabled"] is False and off["url"] == made["url"]
    rotated = operator.json(
        "webhooks", "rotate-secret", "--account", account, "--endpoint", endpoint
    )
    assert rotated["secret"] != made["secret"]
    assert f"removed endpoint {endpoint}" in operator.run(
        "webhooks", "remove", "--account", account, "--endpoint", endpoint
    )
    assert "no such webhook endpoint" in operator.run(
        "webhooks", "test", "--account", account, "--endpoint", endpoint, code=1
    )
    types = [t["type"] for t in operator.json("webhooks", "events")]
    assert types[0] == "balance.low" and "test" not in types and len(types) == 8


def test_bad_input_gives_a_message_and_changes_nothing(operator: Operator) -> None:
    account = str(operator.json("accounts", "create", "--email", "shop@example.com")["account_id"])
    closed = {"CHATMETER_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "false"}
    for url, message in (
        ("http://hooks.example.com/in", "must start with https://"),
        ("https://127.0.0.1/in", "private or local address"),
    ):
        out = operator.run("webhooks", "add", "--account", account, "--url", url, code=1, **closed)
        assert message in out
    assert "Unknown event type" in operator.run(
        "webhooks", "add", "--account", account, "--url", "https://h.example.com/",
        "--events", "balance.gone", code=1,
    )  # fmt: skip
    assert operator.json("webhooks", "list", "--account", account) == []


def test_an_assistants_monthly_token_cap_is_set_and_checked_in_the_cli(
    operator: Operator,
) -> None:
    account = str(operator.json("accounts", "create", "--email", "shop@example.com")["account_id"])
    bot = operator.json(
        "assistants", "create", "--account", account, "--name", "Front desk",
        "--monthly-token-cap", "20000",
    )  # fmt: skip
    assert bot["monthly_token_cap"] == 20_000
    assert "monthly cap 20000" in operator.run("assistants", "list", "--account", account)
    refused = operator.run(
        "assistants", "update", "--account", account, "--assistant", str(bot["id"]),
        "--monthly-token-cap", "-5", code=1,
    )  # fmt: skip
    assert "monthly token cap must be a whole number from 0 to 1,000,000,000" in refused
    assert operator.json("assistants", "list", "--account", account)[0]["monthly_token_cap"] == (
        20_000
    )
    changed = operator.json(
        "assistants", "update", "--account", account, "--assistant", str(bot["id"]),
        "--monthly-token-cap", "0",
    )  # fmt: skip
    assert changed["monthly_token_cap"] == 0


def test_an_endpoint_turned_off_for_failing_says_why_and_is_turned_back_on(
    operator: Operator,
) -> None:
    account = str(operator.json("accounts", "create", "--email", "shop@example.com")["account_id"])
    started = dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC)

    def fail_to_death(at: dt.datetime) -> None:
        operator.run("webhooks", "test", "--account", account, "--endpoint", endpoint, now=iso(at))
        for attempt in range(1, MAX_ATTEMPTS + 1):
            operator.run("jobs", "run", "webhooks", now=iso(at))
            at += backoff(attempt)

    with receiver(500) as inbox:
        made = operator.json("webhooks", "add", "--account", account, "--url", inbox.url)
        endpoint = str(made["id"])
        fail_to_death(started)
        fail_to_death(started + DISABLE_AFTER)
    listed = operator.run("webhooks", "list", "--account", account)
    assert f"{endpoint}  off" in listed
    assert "turned off 2026-11-18 " in listed
    assert "every delivery failed for 3 days (last error: HTTP 500: nope)" in listed
    on = operator.json(
        "webhooks", "update", "--account", account, "--endpoint", endpoint, "--enable"
    )
    assert (on["enabled"], on["disabled_reason"], on["disabled_at"]) == (True, None, None)
    assert "turned off" not in operator.run("webhooks", "list", "--account", account)


def iso(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
