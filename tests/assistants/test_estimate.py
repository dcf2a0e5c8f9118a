"""The launch estimate (``chatmeter.assistants.estimate``): from the settings before any
conversation, from the assistant's own conversations after; in the API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatmeter.assistants.estimate import ASSUMED_TURNS, MONTH_DAYS
from chatmeter.chat.models import Conversation
from chatmeter.cli import app
from chatmeter.context import Context
from tests.support.api import Caller


def add_conversation(ctx: Context, caller: Caller, assistant_id: int, n: int, tokens: int) -> None:
    """A conversation of two turns that spent ``tokens`` (as a settled turn stores them)."""
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        uow.session.add(
            Conversation(
                account_id=caller.account_id,
                assistant_id=assistant_id,
                public_id=f"c_{assistant_id}_{n}",
                messages=4,
                context_tokens=tokens - 100,
                generation_tokens=100,
                created_at=now,
                updated_at=now,
            )
        )
        uow.commit()


def test_before_any_conversation_the_settings_give_an_upper_bound(
    ctx: Context, alice: Caller
) -> None:
    bot = alice.new_assistant(instructions="x" * 400, context_budget=600, max_tokens=200)
    body = alice.client.get(
        f"/api/v1/assistants/{bot['id']}/estimate", params={"conversations_per_day": 10}
    ).json()
    history = ctx.settings.chat_history_tokens
    prompt = 100 + 600 + 30 + 60  # instructions (400 characters ÷ 4), budget, question, prompt
    first, later = prompt + 200, prompt + history + 200
    per_conversation = first + (ASSUMED_TURNS - 1) * later
    assert body["basis"] == "settings"
    assert body["tokens_per_conversation"] == per_conversation
    assert body["tokens_per_month"] == per_conversation * 10 * MONTH_DAYS
    assert body["packages"] == -(-body["tokens_per_month"] // 5000)
    assert "No conversations yet" in body["assumption"] and "upper bound" in body["assumption"]


def test_its_own_conversations_replace_the_assumption(ctx: Context, alice: Caller) -> None:
    bot = alice.new_assistant()
    add_conversation(ctx, alice, bot["id"], 1, 1200)
    add_conversation(ctx, alice, bot["id"], 2, 1800)
    body = alice.client.get(
        f"/api/v1/assistants/{bot['id']}/estimate?conversations_per_day=40"
    ).json()
    assert body["basis"] == "measured"
    assert body["measured_conversations"] == 2
    assert body["tokens_per_conversation"] == 1500
    assert body["turns_per_conversation"] == 2
    assert body["tokens_per_turn"] == 750
    assert body["tokens_per_month"] == 1500 * 40 * 30 == 1_800_000
    assert body["packages"] == 360
    assert "3,000 tokens in 4 turns" in body["assumption"]


def test_another_accounts_assistant_is_not_found(alice: Caller, bob: Caller) -> None:
    bot = bob.new_assistant()
    response = alice.client.get(f"/api/v1/assistants/{bot['id']}/estimate?conversations_per_day=5")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "ten", "", "1000001", str(10**30)])
def test_conversations_a_day_must_be_a_sensible_number(alice: Caller, value: str) -> None:
    bot = alice.new_assistant()
    response = alice.client.get(
        f"/api/v1/assistants/{bot['id']}/estimate", params={"conversations_per_day": value}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    missing = alice.client.get(f"/api/v1/assistants/{bot['id']}/estimate")
    assert missing.status_code == 422


def test_the_cli_gives_the_same_figures(
    ctx: Context, alice: Caller, db_url: str, tmp_path: Path
) -> None:
    bot = alice.new_assistant()
    add_conversation(ctx, alice, bot["id"], 1, 2000)
    env = {
        "CHATMETER_DATABASE_URL": db_url,
        "CHATMETER_ENV": "test",
        "CHATMETER_DATA_DIR": str(tmp_path / "var"),
        "CHATMETER_NOW": "2026-11-15T12:00:00Z",
    }
    args = ["assistants", "estimate", "--account", str(alice.account_id)]
    args += ["--assistant", str(bot["id"]), "--conversations-per-day", "25"]
    result = CliRunner().invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tokens_per_month"] == 2000 * 25 * 30
    text = CliRunner().invoke(app, args, env=env).stdout
    assert "1,500,000 tokens a month: 300 packages" in text
    forecast = CliRunner().invoke(
        app, ["tokens", "forecast", "--account", str(alice.account_id), "--json"], env=env
    )
    assert forecast.exit_code == 0, forecast.output
    assert json.loads(forecast.stdout)["status"] == "not_enough_history"
    other = CliRunner().invoke(
        app, ["tokens", "forecast", "--account", str(alice.account_id)], env=env
    )
    assert "Not enough history" in other.stdout
