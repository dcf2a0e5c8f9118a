"""Retries only before the first token, partial answers, and timeouts, against scripted servers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from chatmeter.llm.base import (
    ChatMessage,
    GenerationRequest,
    PartialGeneration,
    ProviderResponseError,
    ProviderUnavailable,
    TextDelta,
    Usage,
)
from chatmeter.llm.openai_compat import OpenAIProvider
from chatmeter.llm.tokenizers import TiktokenTokenizer
from tests.support.net import free_port

from .scripted_server import ScriptedServer, answer, slow, status, stream

MODEL = "gpt-4o-mini"  # counted with o200k_base when the server reports no usage
PIECES = ["One", " package", " holds", " five", " thousand", " tokens", "."]
REQUEST = GenerationRequest(
    (ChatMessage("system", "Be brief."), ChatMessage("user", "How big is a package?")),
    max_tokens=32,
)
TOKENIZER = TiktokenTokenizer.for_model(MODEL)
PROMPT_TOKENS = TOKENIZER.count_prompt(REQUEST.messages)


def provider(server: ScriptedServer, **options) -> OpenAIProvider:
    options = {"max_retries": 2, "backoff": 0.01, "timeout": 2.0, **options}
    return OpenAIProvider(base_url=server.base_url, model=MODEL, api_key="sk-test", **options)


@pytest.fixture
def make() -> Iterator:
    made: list[OpenAIProvider] = []

    def factory(server: ScriptedServer, **options) -> OpenAIProvider:
        made.append(provider(server, **options))
        return made[-1]

    yield factory
    for p in made:
        p.close()


def drain(s) -> tuple[str, Usage]:
    events = list(s)
    assert isinstance(events[-1], Usage)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_503_twice_then_an_answer_is_retried(make) -> None:
    with ScriptedServer(status(503), status(503), stream(PIECES)) as server:
        text, usage = drain(make(server).stream(REQUEST))
    assert len(server.requests) == 3
    assert text == "".join(PIECES)
    # No usage from the server: counted with the model's encoding.
    assert usage == Usage(PROMPT_TOKENS, TOKENIZER.count_text(text), "tokenizer")
    assert usage.completion_tokens == len(PIECES)
    first = server.requests[0]
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    assert first["stream_options"] == {"include_usage": True}
    assert first["max_tokens"] == 32


def test_usage_the_server_reports_wins(make) -> None:
    reported = {"prompt_tokens": 41, "completion_tokens": 9, "total_tokens": 50}
    with ScriptedServer(stream(PIECES, usage=reported)) as server:
        _, usage = drain(make(server).stream(REQUEST))
    assert usage == Usage(41, 9, "provider")


def test_every_delta_counts_as_a_token_even_if_the_text_retokenizes_shorter(make) -> None:
    # " hel" + "lo" re-tokenizes to the single token " hello", but the model
    # sent two deltas, so it generated at least two tokens.
    with ScriptedServer(stream([" hel", "lo"])) as server:
        text, usage = drain(make(server).stream(REQUEST))
    assert TOKENIZER.count_text(text) == 1
    assert usage.completion_tokens == 2


def test_retries_give_up_with_the_last_status(make) -> None:
    with (
        ScriptedServer(status(503), status(502), status(500, "still down")) as server,
        pytest.raises(ProviderResponseError) as failure,
    ):
        make(server).stream(REQUEST)
    assert len(server.requests) == 3
    assert failure.value.status == 500
    assert "still down" in failure.value.body


def test_429_waits_as_told_then_retries(make) -> None:
    with ScriptedServer(status(429, headers={"Retry-After": "0.3"}), stream(PIECES)) as server:
        started = time.monotonic()
        text, _ = drain(make(server).stream(REQUEST))
    assert time.monotonic() - started >= 0.3
    assert text == "".join(PIECES)


def test_a_client_error_is_not_retried(make) -> None:
    with (
        ScriptedServer(status(401, "bad key"), stream(PIECES)) as server,
        pytest.raises(ProviderResponseError) as failure,
    ):
        make(server).stream(REQUEST)
    assert len(server.requests) == 1
    assert failure.value.status == 401


def test_a_server_that_rejects_stream_options_is_asked_again_without(make) -> None:
    rejection = status(400, "Unrecognized request argument supplied: stream_options")
    with ScriptedServer(rejection, stream(PIECES), stream(PIECES)) as server:
        p = make(server, max_retries=0)
        drain(p.stream(REQUEST))
        drain(p.stream(REQUEST))
    assert ["stream_options" in r for r in server.requests] == [True, False, False]


def test_a_broken_stream_raises_partial_usage_and_is_not_retried(make) -> None:
    with ScriptedServer(stream(PIECES, break_after=3), stream(PIECES)) as server:
        s = make(server).stream(REQUEST)
        received = []
        with pytest.raises(PartialGeneration) as failure:
            for event in s:
                received.append(event)
    assert len(server.requests) == 1
    assert [e.text for e in received] == PIECES[:3]
    partial = failure.value
    assert partial.usage == Usage(PROMPT_TOKENS, 3, "tokenizer")
    assert partial.text == "".join(PIECES[:3])
    assert s.usage == partial.usage


def test_a_stream_that_ends_without_finishing_is_partial(make) -> None:
    with (
        ScriptedServer(stream(PIECES, end_quietly=True)) as server,
        pytest.raises(PartialGeneration) as failure,
    ):
        drain(make(server).stream(REQUEST))
    assert failure.value.usage.completion_tokens == len(PIECES)


def test_a_stream_that_stalls_times_out_as_partial(make) -> None:
    with ScriptedServer(stream(PIECES, stall_after=2)) as server:
        p = make(server, timeout=httpx.Timeout(2.0, read=0.3))
        with pytest.raises(PartialGeneration) as failure:
            drain(p.stream(REQUEST))
    assert len(server.requests) == 1
    assert failure.value.usage == Usage(PROMPT_TOKENS, 2, "tokenizer")


def test_waiting_too_long_for_the_answer_is_unavailable_and_not_retried(make) -> None:
    with ScriptedServer(slow(5, stream(PIECES)), stream(PIECES)) as server:
        p = make(server, timeout=httpx.Timeout(2.0, read=0.3))
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable):
            p.stream(REQUEST)
        assert time.monotonic() - started < 2
    # The server may already be generating: asking again could generate twice.
    assert len(server.requests) == 1


def test_a_server_that_is_down_is_unavailable_after_retries() -> None:
    p = OpenAIProvider(
        base_url=f"http://127.0.0.1:{free_port()}/v1", model=MODEL, max_retries=2, backoff=0.01
    )
    with p, pytest.raises(ProviderUnavailable):
        p.stream(REQUEST)


def test_one_answer_is_retried_the_same_way(make) -> None:
    reported = {"prompt_tokens": 20, "completion_tokens": 7}
    with ScriptedServer(status(503), answer("".join(PIECES), usage=reported)) as server:
        completion = make(server).complete(REQUEST)
    assert len(server.requests) == 2
    assert "stream" not in server.requests[1]
    assert completion.text == "".join(PIECES)
    assert completion.usage == Usage(20, 7, "provider")


def test_one_answer_without_usage_is_counted(make) -> None:
    with ScriptedServer(
        answer("".join(PIECES)), answer("One package", finish_reason="length")
    ) as server:
        p = make(server)
        whole = p.complete(REQUEST)
        cut = p.complete(GenerationRequest(REQUEST.messages, max_tokens=2))
    assert whole.usage == Usage(PROMPT_TOKENS, len(PIECES), "tokenizer")
    assert (cut.finish_reason, cut.usage.completion_tokens) == ("length", 2)


def test_closing_a_stream_early_releases_the_connection(make) -> None:
    with ScriptedServer(stream(PIECES), stream(PIECES)) as server:
        p = make(server, max_retries=0)
        with p.stream(REQUEST) as s:
            first = next(s)
            second = next(s)
        assert [first.text, second.text] == PIECES[:2]
        assert s.usage == Usage(PROMPT_TOKENS, 2, "tokenizer")
        # Never started at all: closing still hands the connection back.
        p.stream(REQUEST).close()
