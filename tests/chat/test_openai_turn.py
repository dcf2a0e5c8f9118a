"""A chat turn through the ``openai`` provider, against a real OpenAI-compatible server.

``python -m llama_cpp.server`` serves the bundled model on loopback; the turn is
streamed over HTTP and settled from the server's own usage figures, or from
the model's vocabulary when a streamed answer carries none. Two models behind one
server (a scripted one on loopback) are each settled in their own tokens.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chatmeter.chat.admission import start_turn
from chatmeter.chat.models import Message
from chatmeter.context import Context
from chatmeter.llm.base import ChatMessage
from chatmeter.llm.local import bundled_model_path
from chatmeter.llm.tokenizers import TiktokenTokenizer
from tests.chat.shop import QUESTION, open_shop, settle_entry
from tests.llm.scripted_server import ScriptedServer, stream
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


# Counted differently by the two encodings: the answer is charged differently too.
ANSWER = "Ünïcödé: 日本語のテキスト, Ελληνικά"
ENCODINGS = {"qwen": "cl100k_base", "gemma": "o200k_base"}


@pytest.mark.model
def test_each_server_model_is_charged_in_its_own_tokens(ctx: Context) -> None:
    # The server reports no usage (as llama.cpp's does not in a stream): each turn is
    # counted with its model's own tokenizer, never with the other's.
    with ScriptedServer(stream([ANSWER]), stream([ANSWER])) as server:
        served = derived(
            ctx,
            openai_base_url=server.base_url,
            models=["local", "openai:qwen", "openai:gemma"],
            openai_tokenizer="tiktoken:o200k_base",  # pinned: allowed, both have their own
            openai_tokenizers={model: f"tiktoken:{name}" for model, name in ENCODINGS.items()},
        )
        charged = {}
        for model in ENCODINGS:
            shop = open_shop(
                served, email=f"{model}@example.com", provider="openai", model=model, max_tokens=64
            )
            turn = start_turn(
                served,
                public_key=shop.public_key,
                visitor="v",
                conversation_id=None,
                message=QUESTION,
            )
            assert list(turn.events())[-1]["type"] == "done"
            entry = settle_entry(served, turn.hold_id)
            charged[model] = (entry.context_tokens, entry.generation_tokens)
        requests = server.requests
    assert [request["model"] for request in requests] == list(ENCODINGS)
    for request, (model, name) in zip(requests, ENCODINGS.items(), strict=True):
        tokenizer = TiktokenTokenizer(name)
        sent = [ChatMessage(m["role"], m["content"]) for m in request["messages"]]
        assert charged[model] == (tokenizer.count_prompt(sent), tokenizer.count_text(ANSWER))
    assert charged["qwen"][0] != charged["gemma"][0]
    assert charged["qwen"][1] != charged["gemma"][1]
    assert_ledger_settled(served)
