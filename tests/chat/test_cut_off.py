"""An answer that stops at the response cap says so: in the chat's answer, its stored
message and the conversation as the customer reads it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from tests.chat.shop import QUESTION, Recording, answers, open_shop, sse

pytestmark = pytest.mark.model  # the bundled model generates, greedily (temperature 0)

CAP = 16  # the smallest response cap an assistant may have
LONG_QUESTION = (
    "Explain in detail everything about buying tokens: the packages, the price of one "
    "and of ten, when the balance renews, and how to cancel."
)


def test_an_answer_cut_at_the_response_cap_is_marked_so(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    shop = open_shop(
        ctx,
        max_tokens=CAP,
        instructions="Answer in five long sentences, giving every detail from the passages.",
    )

    reply = visitor.post(shop.chat_url, json={"message": LONG_QUESTION})

    assert reply.status_code == 200, reply.text
    (message,) = answers(ctx)
    assert message.completion_tokens == CAP  # it did reach the cap
    assert reply.json()["cut_off"] is True and message.cut_off is True
    owner = shop.owner(visitor)
    conversation = owner.get(f"/api/v1/conversations/{message.conversation_id}")
    assert conversation.status_code == 200, conversation.text
    said = [m for m in conversation.json()["messages"] if m["role"] == "assistant"]
    assert [m["cut_off"] for m in said] == [True]


def test_a_streamed_answer_that_ends_on_its_own_is_not_cut_off(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    shop = open_shop(ctx, max_tokens=400, instructions="Answer in at most five words.")

    reply = visitor.post(
        shop.chat_url, json={"message": QUESTION}, headers={"Accept": "text/event-stream"}
    )

    assert reply.status_code == 200
    (message,) = answers(ctx)
    # Marked exactly when it reached the cap (the model nearly always stops long before
    # 400 tokens, so this holds the unmarked case; it does not rely on the answer's length).
    reached = message.completion_tokens == 400
    done = [data for event, data in sse(reply.text) if event == "done"]
    assert [data["cut_off"] for data in done] == [reached] and message.cut_off is reached
