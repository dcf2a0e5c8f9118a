"""The ``openai`` provider against a real OpenAI-compatible server: llama-cpp-python's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatmeter.llm.base import (
    ChatMessage,
    GenerationRequest,
    ProviderResponseError,
    TextDelta,
    Usage,
)
from chatmeter.llm.openai_compat import OpenAIProvider
from chatmeter.llm.registry import make_provider
from tests.support.llm import QUESTION, SERVER_API_KEY

pytestmark = pytest.mark.slow  # spawns the server


@pytest.fixture(scope="module")
def served(llama_server: str, gguf_path: Path) -> Iterator[OpenAIProvider]:
    provider = make_provider(
        "openai",
        base_url=llama_server,
        api_key=SERVER_API_KEY,
        model="smollm2",
        # The server's model is not an OpenAI one: count with the same GGUF's vocabulary.
        tokenizer=f"gguf:{gguf_path}",
        context_window=2048,
    )
    assert isinstance(provider, OpenAIProvider)
    with provider:
        yield provider


CASES = {
    "end-of-answer": GenerationRequest(QUESTION, max_tokens=32),
    "cut-at-cap": GenerationRequest(QUESTION, max_tokens=4),
    # Here the model has spelt "Ascenda" as "A"+"sc"+"end"+"a", a split its
    # tokenizer would not make ("enda"): the text alone counts one short.
    "non-canonical": GenerationRequest(
        (
            ChatMessage("system", "You are helpful."),
            ChatMessage("user", "Name three colours."),
        ),
        max_tokens=32,
    ),
}


def test_one_answer_carries_the_servers_usage(served: OpenAIProvider) -> None:
    completion = served.complete(CASES["end-of-answer"])
    assert completion.text
    assert completion.finish_reason == "stop"
    assert completion.usage.source == "provider"
    # Our count before the call is the server's own.
    assert completion.usage.prompt_tokens == served.count_prompt_tokens(QUESTION)


@pytest.mark.parametrize("case", CASES)
def test_a_stream_is_counted_as_the_server_counts(served: OpenAIProvider, case: str) -> None:
    """The server reports no usage in a stream, so it is counted. Two generations are not
    always the same text (under load the server reuses its prompt cache the second time):
    the stream is compared with the server's usage only where that is certain (the prompt,
    and an answer cut at the cap), and otherwise with its own deltas and text."""
    request = CASES[case]
    reported = served.complete(request)
    stream = served.stream(request)
    events = list(stream)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    usage = events[-1]

    assert isinstance(usage, Usage)
    assert usage.source == "tokenizer"  # the server reports none in a stream
    assert usage.prompt_tokens == reported.usage.prompt_tokens
    deltas = sum(isinstance(e, TextDelta) and bool(e.text) for e in events)
    # Every delta carries at least one token, and the text at least its canonical count.
    assert usage.completion_tokens >= max(deltas, served.tokenizer.count_text(text))
    if case == "cut-at-cap":
        assert (usage.completion_tokens, stream.finish_reason) == (4, "length")
        assert (reported.usage.completion_tokens, reported.finish_reason) == (4, "length")


def test_a_wrong_key_is_refused_without_retrying(llama_server: str, gguf_path: Path) -> None:
    with (
        OpenAIProvider(
            base_url=llama_server, model="smollm2", api_key="wrong", tokenizer=f"gguf:{gguf_path}"
        ) as provider,
        pytest.raises(ProviderResponseError) as failure,
    ):
        provider.stream(CASES["cut-at-cap"])
    assert failure.value.status == 401
