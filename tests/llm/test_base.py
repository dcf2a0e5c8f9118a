"""The interface itself: requests, streams, the mock provider and the registry."""

from __future__ import annotations

import pytest

from chatmeter.errors import ChatmeterError
from chatmeter.llm import (
    PROVIDER_NAMES,
    ChatMessage,
    ContextWindowExceeded,
    GenerationRequest,
    MockProvider,
    PartialGeneration,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailable,
    TextDelta,
    Usage,
    make_provider,
)
from chatmeter.llm.local import LocalProvider

HELLO = [ChatMessage("user", "hello there")]


def test_requests_are_checked() -> None:
    request = GenerationRequest(HELLO, max_tokens=8, stop=["."])  # lists become tuples
    assert request.messages == tuple(HELLO) and request.stop == (".",)
    for bad in (
        {"messages": [], "max_tokens": 8},
        {"messages": HELLO, "max_tokens": 0},
        {"messages": HELLO, "max_tokens": 8, "temperature": 3.0},
    ):
        with pytest.raises(ValueError):
            GenerationRequest(**bad)
    with pytest.raises(ValueError):
        ChatMessage("tool", "x")  # type: ignore[arg-type]


def test_errors_belong_to_the_one_tree() -> None:
    for error in (
        ProviderUnavailable,
        ProviderResponseError,
        ContextWindowExceeded,
        PartialGeneration,
    ):
        assert issubclass(error, ProviderError)
    assert issubclass(ProviderError, ChatmeterError)
    partial = PartialGeneration("cut", usage=Usage(10, 3, "tokenizer"))
    assert partial.to_dict()["error"]["details"] == {"prompt_tokens": 10, "completion_tokens": 3}


def test_the_mock_streams_words_and_counts_them() -> None:
    provider = MockProvider("one two three four")
    stream = provider.stream(GenerationRequest(HELLO, max_tokens=3))
    events = list(stream)
    assert events[:-1] == [TextDelta("one"), TextDelta(" two"), TextDelta(" three")]
    assert events[-1] == Usage(5, 3, "provider")
    assert stream.finish_reason == "length"
    completion = provider.complete(GenerationRequest(HELLO, max_tokens=10))
    assert (completion.text, completion.finish_reason) == ("one two three four", "stop")


def test_the_mock_can_break_off() -> None:
    stream = MockProvider("one two three", fail_after=2).stream(
        GenerationRequest(HELLO, max_tokens=9)
    )
    with pytest.raises(PartialGeneration) as failure:
        list(stream)
    assert failure.value.usage == Usage(5, 2, "provider") == stream.usage


def test_the_mock_refuses_a_prompt_that_does_not_fit() -> None:
    with pytest.raises(ContextWindowExceeded):
        MockProvider(context_window=4).stream(GenerationRequest(HELLO, max_tokens=1))


def test_providers_are_made_by_name() -> None:
    assert PROVIDER_NAMES == ("local", "openai")
    assert isinstance(make_provider("local", n_ctx=1024), LocalProvider)
    with make_provider("openai", base_url="http://127.0.0.1:9/v1", model="gpt-4o") as provider:
        assert provider.context_window == 8192
    with pytest.raises(ValueError, match="unknown provider"):
        make_provider("anthropic")
