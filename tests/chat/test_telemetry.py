"""A chat turn's figures and logs: counted by outcome and tokens, timed, and its log
lines tying the request id to its hold and ledger entries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from chatmeter.context import Context
from chatmeter.ledger.models import LedgerEntry
from chatmeter.telemetry.logs import make_handler
from chatmeter.web.app import create_app
from tests.chat.shop import QUESTION, Recording, open_shop
from tests.support.context import derived

pytestmark = pytest.mark.model  # the turn retrieves with the embedder and runs the model

PROXY = ("127.0.0.1", 50000)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Chatmeter's log lines as ``CHATMETER_LOG_FORMAT=json`` writes them."""
    out = io.StringIO()
    handler = make_handler("json", out)
    logger = logging.getLogger("chatmeter")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_turn_is_counted_timed_and_logged_under_its_request_id(
    ctx: Context, model: Recording, json_lines: io.StringIO
) -> None:
    shop = open_shop(ctx)
    before = {
        "complete": value("chatmeter_chat_turns_total", outcome="complete"),
        "context": value("chatmeter_tokens_charged_total", kind="context"),
        "generation": value("chatmeter_tokens_charged_total", kind="generation"),
        "turns": value("chatmeter_chat_turn_seconds_count"),
        "first": value("chatmeter_chat_first_token_seconds_count"),
        "unavailable": value("chatmeter_chat_turns_total", outcome="unavailable"),
    }
    proxied = derived(ctx, trusted_proxies="127.0.0.1")
    with TestClient(create_app(proxied), client=PROXY) as browser:
        reply = browser.post(
            shop.chat_url,
            json={"message": QUESTION},
            headers={"X-Request-Id": "edge-7", "X-Forwarded-For": "198.51.100.7"},
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-request-id"] == "edge-7"
        refused = browser.post("/api/v1/public/pk_nobody/chat", json={"message": QUESTION})
        assert refused.status_code == 503

    with ctx.db.read() as session:
        entries = list(
            session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == shop.account_id))
        )
    settle = next(e for e in entries if e.kind == "settle")
    assert value("chatmeter_chat_turns_total", outcome="complete") == before["complete"] + 1
    assert value("chatmeter_tokens_charged_total", kind="context") == (
        before["context"] + settle.context_tokens
    )
    assert value("chatmeter_tokens_charged_total", kind="generation") == (
        before["generation"] + settle.generation_tokens
    )
    assert value("chatmeter_chat_turn_seconds_count") == before["turns"] + 1
    assert value("chatmeter_chat_first_token_seconds_count") == before["first"] + 1
    assert value("chatmeter_chat_turns_total", outcome="unavailable") == before["unavailable"] + 1

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "edge-7"]
    reserved = next(line for line in mine if line["message"] == "chat turn reserved")
    settled = next(line for line in mine if line["message"] == "chat turn settled")
    assert reserved["hold_id"] == settled["hold_id"] == settle.hold_id
    turn_entries = sorted(e.id for e in entries if e.hold_id == settle.hold_id)
    assert sorted(reserved["entry_ids"] + settled["entry_ids"]) == turn_entries
    assert settled["outcome"] == "complete"
    assert settled["context_tokens"] == settle.context_tokens
    access = [line for line in mine if line["logger"] == "chatmeter.access"]
    assert access and access[0]["status"] == 200 and access[0]["client"] == "198.51.100.7"
