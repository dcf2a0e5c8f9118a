"""A chat turn through the ``openai`` provider, against a real OpenAI-compatible server.

``python -m llama_cpp.server`` serves the bundled model on loopback; the turn is
streamed over HTTP and settled from the server's own usage figures, or from
the model's vocabulary when a streamed answer carries none.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chatmeter.chat.admission import start_turn
from chatmeter.chat.models import Message
from chatmeter.context import Context
from chatmeter.llm.local import bundled_model_path
from tests.chat.shop import open_shop, settle_entry
from tests.support.context import derived
from tests.support.ledger import assert_ledger_settled
from tests.support.llm import SERVER_API_KEY


@pytest.fixture
def remote(ctx: Context, llama_server: str) -> Context:
    return derived(
        ctx,
        openai_base_url=llama_server,
        openai_api_key=SERVER_API_KEY,
        openai_model="smollm2",
        models=["local", "openai:smollm2"],
        openai_tokenizer=f"gguf:{bundled_model_path()}",
        openai_context_window=2048,
    )


@pytest.mark.parametrize("streamed", [True, False])
def test_a_turn_over_an_openai_compatible_server_is_settled_exactly(
    remote: Context, streamed: bool
) -> None:
    shop = open_shop(remote, provider="openai")
    turn = start_turn(
        remote,
        public_key=shop.public_key,
        visitor="v",
        conversation_id=None,
        message="How many tokens are in one package?",
    )
    if streamed:
        events = list(turn.events())
        assert events[0]["type"] == "start" and events[-1]["type"] == "done"
        assert sum(e["type"] == "delta" for e in events) >= 1
    else:
        assert turn.run()["answer"].strip()
    usage = turn.usage
    assert usage is not None and usage.completion_tokens >= 1
    assert usage.prompt_tokens == turn.prompt_tokens  # counted before = what the server read
    entry = settle_entry(remote, turn.hold_id)
    assert (entry.context_tokens, entry.generation_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    with remote.db.read() as session:
        message = session.scalars(select(Message).where(Message.role == "assistant")).one()
    assert (message.prompt_tokens, message.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert_ledger_settled(remote)
