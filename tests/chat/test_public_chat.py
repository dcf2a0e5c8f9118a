"""A visitor's turn through the public API with the bundled model, paid token by token.

Every figure is checked against llama.cpp's own count: the prompt as the model
evaluated it, and the tokens it sampled, never an estimate.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.llm.base import ChatMessage
from chatmeter.llm.local import MODEL_NAME
from chatmeter.web.app import create_app
from tests.chat.shop import (
    DOCUMENTS,
    QUESTION,
    Recording,
    answers,
    holds,
    install,
    normalised,
    open_shop,
    settle_entry,
    sse,
)
from tests.support.context import derived
from tests.support.ledger import assert_ledger_settled

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder

# What visitors see as each document's source title, and its file.
FILES = {"Buying tokens": "buying-tokens.txt", "Opening hours": "opening-hours.md"}


def test_a_turn_is_answered_with_sources_and_settled_at_llama_cpps_counts(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    """The settled context and generation are the prompt and completion tokens llama.cpp
    counted, and the customer sees exactly those figures per message."""
    shop = open_shop(ctx, tokens=5_000, show_sources="passages")

    reply = visitor.post(shop.chat_url, json={"message": QUESTION})

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["answer"].strip()
    assert body["conversation_id"].startswith("cv_")
    assert body["sources"], "an answer from trained files cites them"
    # Visitors see the document's title ("Opening hours", its heading) or the file's name
    # made readable ("Buying tokens"), never the customer's file name.
    assert body["sources"][0]["title"] == "Buying tokens"
    assert all("filename" not in source for source in body["sources"])
    for source in body["sources"]:
        assert normalised(source["passage"]) in normalised(DOCUMENTS[FILES[source["title"]]])

    (request,) = model.requests
    (message,) = answers(ctx)
    (hold,) = holds(ctx, shop.account_id)
    entry = settle_entry(ctx, hold.id)
    assert message.status == "complete"
    assert message.content == body["answer"]
    assert message.hold_id == hold.id
    # Reserved: the whole prompt plus the response cap.
    assert request.max_tokens == 16
    assert hold.amount == message.prompt_tokens + request.max_tokens
    # Settled: what the model consumed, no more.
    assert (entry.context_tokens, entry.generation_tokens) == (
        message.prompt_tokens,
        message.completion_tokens,
    )
    assert entry.consumed == message.prompt_tokens + message.completion_tokens
    assert (message.context_tokens, message.generation_tokens) == (
        entry.context_tokens,
        entry.generation_tokens,
    )

    # Independent counts of the generation that ran (a second generation need not give
    # the same text): the prompt through llama.cpp's tokenizer, and llama.cpp's own
    # count of the tokens it sampled.
    real = model.inner
    assert real.count_prompt_tokens(request.messages) == message.prompt_tokens
    (stream,) = model.streams
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (
        message.prompt_tokens,
        message.completion_tokens,
    )
    assert request.max_tokens >= message.completion_tokens >= 1

    owner = shop.owner(visitor)
    (listed,) = owner.get("/api/v1/conversations").json()
    assert listed["message_count"] == 2
    assert (listed["context_tokens"], listed["generation_tokens"], listed["tokens"]) == (
        entry.context_tokens,
        entry.generation_tokens,
        entry.consumed,
    )
    detail = owner.get(f"/api/v1/conversations/{listed['id']}").json()
    asked, answered = detail["messages"]
    assert (asked["role"], asked["content"], asked["tokens"]) == ("user", QUESTION, 0)
    assert answered["role"] == "assistant" and answered["content"] == body["answer"]
    assert answered["status"] == "complete"
    assert (answered["context_tokens"], answered["generation_tokens"], answered["tokens"]) == (
        entry.context_tokens,
        entry.generation_tokens,
        entry.consumed,
    )
    assert (answered["prompt_tokens"], answered["completion_tokens"]) == (
        message.prompt_tokens,
        message.completion_tokens,
    )
    # The customer sees every source in full; the visitor what the assistant shows.
    assert [s["title"] for s in answered["sources"]] == [s["title"] for s in body["sources"]]
    for full, shown in zip(answered["sources"], body["sources"], strict=True):
        assert isinstance(full["file_id"], int) and "file_id" not in shown
        assert full["heading"] == shown["heading"]
        assert full["page"] == 1 and shown["page"] is None  # pages mean something in PDFs only
        assert full["passage"].startswith(shown["passage"])

    balance = owner.get("/api/v1/balance").json()
    assert balance["balance"] == balance["available"] == 5_000 - entry.consumed
    assert balance["reserved"] == 0
    assert balance["used_this_month"] == entry.consumed
    assert_ledger_settled(ctx)


def test_the_answer_streams_as_events_and_a_conversation_continues(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    """With ``Accept: text/event-stream`` the answer arrives as start, deltas, done; the
    deltas add up to the stored answer; the returned conversation id carries the history."""
    shop = open_shop(ctx, tokens=5_000)
    stream = {"Accept": "text/event-stream"}

    first = visitor.post(shop.chat_url, json={"message": QUESTION}, headers=stream)

    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/event-stream")
    events = sse(first.text)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) - 2 >= 2
    conversation = events[0][1]["conversation_id"]
    assert events[-1][1]["conversation_id"] == conversation
    assert events[-1][1]["sources"][0]["title"] == "Buying tokens"
    streamed = "".join(data["text"] for kind, data in events if kind == "delta")
    (stored,) = answers(ctx)
    assert streamed == stored.content and streamed.strip()

    second = visitor.post(
        shop.chat_url, json={"message": QUESTION, "conversation_id": conversation}, headers=stream
    )

    events = sse(second.text)
    assert events[0] == ("start", {"conversation_id": conversation})
    assert events[-1][0] == "done"
    earlier, later = answers(ctx)
    assert later.conversation_id == earlier.conversation_id
    assert later.content == "".join(d["text"] for kind, d in events if kind == "delta")
    # Same question, same passages: the prompt grew by exactly the earlier exchange.
    opening, follow_up = model.requests
    assert follow_up.messages == (
        opening.messages[0],
        ChatMessage("user", QUESTION),
        ChatMessage("assistant", earlier.content),
        ChatMessage("user", QUESTION),
    )
    assert later.prompt_tokens > earlier.prompt_tokens
    assert later.prompt_tokens == model.inner.count_prompt_tokens(follow_up.messages)

    owner = shop.owner(visitor)
    (listed,) = owner.get("/api/v1/conversations").json()
    settled = [settle_entry(ctx, m.hold_id) for m in (earlier, later)]
    assert listed["message_count"] == 4
    assert listed["tokens"] == sum(e.consumed for e in settled)
    figures = [
        (m["context_tokens"], m["generation_tokens"])
        for m in owner.get(f"/api/v1/conversations/{listed['id']}").json()["messages"]
        if m["role"] == "assistant"
    ]
    assert figures == [(e.context_tokens, e.generation_tokens) for e in settled]
    assert owner.get("/api/v1/balance").json()["balance"] == 5_000 - listed["tokens"]
    assert_ledger_settled(ctx)


@pytest.mark.parametrize(
    ("context_rate", "generation_rate"), [("2", "3"), ("1.25", "0.3")], ids=["whole", "fractional"]
)
def test_the_rate_card_weighs_each_figure_and_rounds_up(
    ctx: Context, context_rate: str, generation_rate: str
) -> None:
    """With a rate card for the model, context and generation are ceil(rate × llama.cpp's
    count) each, for the hold as for the settlement."""
    priced = derived(ctx, rate_card={MODEL_NAME: (Decimal(context_rate), Decimal(generation_rate))})
    model = install(priced)
    shop = open_shop(priced, tokens=5_000)

    with TestClient(create_app(priced)) as visitor:
        reply = visitor.post(shop.chat_url, json={"message": QUESTION})

    assert reply.status_code == 200, reply.text
    (request,) = model.requests
    (message,) = answers(priced)
    (hold,) = holds(priced, shop.account_id)
    entry = settle_entry(priced, hold.id)
    prompt, completion = message.prompt_tokens, message.completion_tokens
    assert prompt == model.inner.count_prompt_tokens(request.messages)
    assert completion >= 1
    context = math.ceil(Decimal(context_rate) * prompt)
    generation = math.ceil(Decimal(generation_rate) * completion)
    assert (entry.context_tokens, entry.generation_tokens) == (context, generation)
    assert (message.context_tokens, message.generation_tokens) == (context, generation)
    assert hold.amount == context + math.ceil(Decimal(generation_rate) * request.max_tokens)
    assert_ledger_settled(priced)
