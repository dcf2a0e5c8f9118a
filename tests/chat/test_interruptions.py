"""Turns that end early: the visitor leaves, or the model breaks off. The customer pays
for exactly what the model consumed, and the rest of the hold goes back."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from chatmeter.chat import admission
from chatmeter.chat.turn import Turn
from chatmeter.context import Context
from chatmeter.ledger.models import EntryKind, HoldStatus
from chatmeter.llm.base import ChatMessage, GenerationRequest
from chatmeter.llm.local import LocalProvider
from tests.chat.shop import (
    QUESTION,
    UNAVAILABLE,
    Breaking,
    Recording,
    answers,
    available,
    entries_for_hold,
    holds,
    install,
    open_shop,
    settle_entry,
    sse,
)
from tests.support.ledger import assert_ledger_settled

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder


def start(ctx: Context, public_key: str) -> Turn:
    return admission.start_turn(
        ctx, public_key=public_key, message=QUESTION, conversation_id=None, visitor="198.51.100.7"
    )


def assert_model_is_free(model: Recording) -> None:
    """The bundled model answers again: an early end released its lock."""
    assert isinstance(model.inner, LocalProvider)
    done = threading.Event()

    def ask() -> None:
        model.inner.complete(GenerationRequest((ChatMessage("user", "Hi"),), max_tokens=2))
        done.set()

    threading.Thread(target=ask, daemon=True).start()
    assert done.wait(timeout=120), "the model is still locked by a finished turn"


def test_a_visitor_who_leaves_mid_answer_pays_for_what_was_generated(
    ctx: Context, model: Recording
) -> None:
    """Closing the event stream after the first delta settles the prompt and the tokens
    generated so far, stores the answer as "interrupted", and frees the model."""
    shop = open_shop(ctx, tokens=5_000)
    turn = start(ctx, shop.public_key)
    events = turn.events()

    assert next(events)["type"] == "start"
    first = next(events)
    assert first["type"] == "delta" and first["text"]
    events.close()

    (hold,) = holds(ctx, shop.account_id)
    entry = settle_entry(ctx, hold.id)
    assert hold.status == HoldStatus.SETTLED
    assert entry.context_tokens == turn.prompt_tokens
    assert 1 <= entry.generation_tokens < turn.request.max_tokens
    (message,) = answers(ctx)
    assert (message.status, message.content) == ("interrupted", first["text"])
    assert (message.prompt_tokens, message.completion_tokens) == (
        entry.context_tokens,
        entry.generation_tokens,
    )
    assert available(ctx, shop.account_id) == 5_000 - entry.consumed
    assert_ledger_settled(ctx)
    assert_model_is_free(model)


def test_a_visitor_who_leaves_before_the_answer_holds_nothing(
    ctx: Context, model: Recording
) -> None:
    """Closing the event stream right after ``start`` gives the whole hold back at once:
    nothing was generated, and tokens must not stay locked until the hold expires."""
    shop = open_shop(ctx, tokens=5_000)
    turn = start(ctx, shop.public_key)
    events = turn.events()

    assert next(events)["type"] == "start"
    events.close()

    (hold,) = holds(ctx, shop.account_id)
    assert hold.status == HoldStatus.RELEASED
    assert available(ctx, shop.account_id) == 5_000
    assert model.calls == 0
    assert_ledger_settled(ctx)


def test_a_generation_that_breaks_off_is_settled_for_the_part_consumed(ctx: Context) -> None:
    """A provider failing after a few tokens (``PartialGeneration``) is settled for the
    usage it reports; the visitor gets the partial answer, stored as "partial"."""
    model = install(ctx, Breaking, after=3)
    shop = open_shop(ctx, tokens=5_000)
    turn = start(ctx, shop.public_key)

    events = list(turn.events())

    assert [e["type"] for e in events] == ["start", "delta", "delta", "delta", "done"]
    assert model.consumed is not None
    (hold,) = holds(ctx, shop.account_id)
    entry = settle_entry(ctx, hold.id)
    assert (entry.context_tokens, entry.generation_tokens) == (
        model.consumed.prompt_tokens,
        model.consumed.completion_tokens,
    )
    assert entry.context_tokens == turn.prompt_tokens
    assert 3 <= entry.generation_tokens < turn.request.max_tokens
    (message,) = answers(ctx)
    assert message.status == "partial"
    assert message.content == "".join(e["text"] for e in events if e["type"] == "delta")
    assert available(ctx, shop.account_id) == 5_000 - entry.consumed
    assert_ledger_settled(ctx)
    assert_model_is_free(model)


def test_a_provider_failing_before_any_token_releases_the_hold_in_full(
    ctx: Context, visitor: TestClient
) -> None:
    """No token generated: the whole hold goes back, nothing is charged, and the visitor
    gets the generic 503 (JSON) or an ``error`` event (stream)."""
    model = install(ctx, Breaking, after=0)
    shop = open_shop(ctx, tokens=5_000)

    reply = visitor.post(shop.chat_url, json={"message": QUESTION})
    streamed = visitor.post(
        shop.chat_url, json={"message": QUESTION}, headers={"Accept": "text/event-stream"}
    )

    assert reply.status_code == 503 and reply.json() == UNAVAILABLE
    events = sse(streamed.text)
    assert [kind for kind, _ in events] == ["start", "error"]
    assert events[1][1] == {"message": UNAVAILABLE["error"]["message"]}
    assert model.calls == 2
    for hold in holds(ctx, shop.account_id):
        assert hold.status == HoldStatus.RELEASED
        (reserved, released) = entries_for_hold(ctx, hold.id)
        assert reserved.kind == EntryKind.RESERVE and released.kind == EntryKind.RELEASE
        assert released.available_delta == hold.amount and released.consumed == 0
    assert available(ctx, shop.account_id) == 5_000
    assert answers(ctx) == []
    assert_ledger_settled(ctx)
