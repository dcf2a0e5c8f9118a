"""Many visitors at once against a balance that covers only some of them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.ledger.models import HoldStatus
from chatmeter.web.app import create_app
from tests.chat.shop import (
    QUESTION,
    UNAVAILABLE,
    answers,
    available,
    entries,
    holds,
    install,
    open_shop,
    settle_entry,
)
from tests.support.context import derived
from tests.support.ledger import assert_ledger_settled

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder

TURNS = 50
GRANTED = 3_000  # a handful of reservations of prompt + response cap


def test_fifty_concurrent_turns_never_overdraw_and_only_reserved_turns_reach_the_model(
    ctx: Context,
) -> None:
    """50 turns at once: the balance never goes below zero, the model is called exactly
    for the turns that got a reservation, the others hear only "unavailable", and every
    reservation is settled for what its turn consumed."""
    # Places in the model's queue for every turn: this test is about the balance.
    busy = derived(
        ctx, chat_visitor_rate="1000/minute", chat_queue_size=TURNS, chat_queue_per_account=TURNS
    )
    model = install(busy)
    shop = open_shop(busy, tokens=GRANTED)
    start = threading.Barrier(TURNS)

    with TestClient(create_app(busy)) as visitor:

        def ask(_: int) -> httpx.Response:
            start.wait(timeout=60)
            return visitor.post(shop.chat_url, json={"message": QUESTION})

        with ThreadPoolExecutor(TURNS) as pool:
            replies = list(pool.map(ask, range(TURNS)))

    answered = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code != 200]
    assert all(r.status_code == 503 and r.json() == UNAVAILABLE for r in refused)
    assert all(r.json()["answer"].strip() for r in answered)
    reserved = holds(busy, shop.account_id)
    assert len(reserved) == len(answered) == model.calls
    assert 0 < len(answered) < TURNS
    # Every turn asked the same question of a fresh conversation: one size of hold.
    (per_turn,) = {h.amount for h in reserved}
    assert len(answered) >= GRANTED // per_turn
    assert all(h.status == HoldStatus.SETTLED for h in reserved)

    ledger = entries(busy, shop.account_id)
    assert all(e.available_after >= 0 and e.reserved_after >= 0 for e in ledger)
    assert max(e.reserved_after for e in ledger) <= GRANTED
    settled = [settle_entry(busy, h.id) for h in reserved]
    assert sorted((m.context_tokens, m.generation_tokens) for m in answers(busy)) == sorted(
        (e.context_tokens, e.generation_tokens) for e in settled
    )
    assert available(busy, shop.account_id) == GRANTED - sum(e.consumed for e in settled)
    assert_ledger_settled(busy)
