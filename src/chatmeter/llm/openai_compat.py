"""Provider ``openai``: any server that speaks OpenAI's chat completions API.

OpenAI, Azure OpenAI, Ollama, vLLM, the llama.cpp server and LM Studio, by
base URL, API key and model name. Answers stream as server-sent events
(``data:`` lines, ending with ``data: [DONE]``).

Usage is the server's own when it reports it (OpenAI does in a stream when
asked with ``stream_options.include_usage``); otherwise it is counted with the
model's tokenizer (see ``chatmeter.llm.tokenizers``). The prompt: as rendered
for the model. The answer: an answer cut at ``max_tokens`` (finish reason
"length") used exactly ``max_tokens``; any other, the larger of the number of
text deltas received (each carries at least one token) and the tokenizer's
count of the text (which misses a token wherever the model chose a split the
tokenizer would not make). llama.cpp's server reports no usage in a stream,
so nothing here depends on it. One case stays short without reported usage:
tokens of a stop sequence the server matched are generated but never sent.

Retries happen only before the first token: a connection that cannot be made
and a 429 or 5xx answer are retried with exponential backoff (honouring
``Retry-After``). A timeout while waiting for the answer is not retried (the
server may already be generating), and nothing is retried once the answer has
begun: a stream that breaks raises ``PartialGeneration`` with what it used.

Azure: ``base_url=https://RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT``,
``extra_query={"api-version": "2024-10-21"}``, ``api_key_header="api-key"``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from chatmeter.llm.base import (
    ChatMessage,
    Completion,
    GenerationRequest,
    GenerationStream,
    Meter,
    PartialGeneration,
    Provider,
    ProviderResponseError,
    ProviderUnavailable,
    StreamEvent,
    TextDelta,
    Usage,
)
from chatmeter.llm.tokenizers import Tokenizer, resolve_tokenizer

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=5.0)
DEFAULT_CONTEXT_WINDOW = 8192
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0  # seconds; a longer wait is not worth holding a visitor for
# Nothing reaches the server before these, so trying again cannot generate twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class OpenAIProvider(Provider):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        tokenizer: str | Tokenizer | None = None,
        context_window: int = DEFAULT_CONTEXT_WINDOW,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        stream_usage: bool = True,
        max_tokens_param: str = "max_tokens",
        api_key_header: str = "Authorization",
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if context_window < 1 or max_retries < 0 or backoff < 0:
            raise ValueError("context_window, max_retries and backoff must not be negative")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.tokenizer = resolve_tokenizer(tokenizer, model=model)
        self._context_window = context_window
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        # OpenAI's reasoning models want "max_completion_tokens" instead.
        self._max_tokens_param = max_tokens_param
        self._stream_usage = stream_usage
        headers = dict(extra_headers or {})
        if api_key:
            if api_key_header.lower() == "authorization":
                headers["Authorization"] = f"Bearer {api_key}"
            else:
                headers[api_key_header] = api_key
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers=headers,
            params=dict(extra_query or {}),
            timeout=timeout,
            transport=transport,
        )

    @property
    def context_window(self) -> int:
        return self._context_window

    def close(self) -> None:
        self._client.close()

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self.tokenizer.count_prompt(messages)

    # --- streaming ----------------------------------------------------------

    def stream(self, request: GenerationRequest) -> GenerationStream:
        meter = Meter(
            prompt_tokens=self.count_prompt_tokens(request.messages),
            source="tokenizer",
            count_text=self.tokenizer.count_text,
        )
        self.check_fits(meter.prompt_tokens)
        body = self._body(request, stream=True)
        response = self._open(body)
        return GenerationStream(
            self._events(response, request, meter), meter=meter, on_close=response.close
        )

    def _events(
        self, response: httpx.Response, request: GenerationRequest, meter: Meter
    ) -> Iterator[StreamEvent]:
        reported: Mapping[str, Any] | None = None
        done = False
        try:
            for data in _sse_data(response.iter_lines()):
                if data.strip() == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    raise ValueError(f"unexpected event {data[:200]!r}")
                if chunk.get("error"):
                    raise ValueError(f"the server reported an error: {chunk['error']}")
                if chunk.get("usage"):
                    reported = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        meter.text.append(text)
                        yield TextDelta(text)
                    if choice.get("finish_reason"):
                        meter.finish_reason = choice["finish_reason"]
        except (httpx.HTTPError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise PartialGeneration(
                f"the answer broke off: {exc}", usage=meter.usage(), text="".join(meter.text)
            ) from exc
        finally:
            response.close()
        if not done and meter.finish_reason is None:
            raise PartialGeneration(
                "the stream ended before the answer was complete",
                usage=meter.usage(),
                text="".join(meter.text),
            )
        yield self._final_usage(reported, request, meter)

    def _final_usage(
        self, reported: Mapping[str, Any] | None, request: GenerationRequest, meter: Meter
    ) -> Usage:
        usage = _reported_usage(reported)
        if usage is not None:
            return usage
        counted = meter.usage()
        if meter.finish_reason == "length":
            # Cut at the cap: the server generated exactly that many (fewer only
            # when the context window ran out first).
            room = self._context_window - counted.prompt_tokens
            return Usage(counted.prompt_tokens, min(request.max_tokens, room), "tokenizer")
        return counted

    # --- one answer ---------------------------------------------------------

    def complete(self, request: GenerationRequest) -> Completion:
        prompt_tokens = self.count_prompt_tokens(request.messages)
        self.check_fits(prompt_tokens)
        response = self._open(self._body(request, stream=False))
        try:
            answer = json.loads(response.read())
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
            finish_reason = choice.get("finish_reason") or "stop"
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(f"timed out reading the answer: {exc}") from exc
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderResponseError(f"unreadable answer: {exc}") from exc
        finally:
            response.close()
        usage = _reported_usage(answer.get("usage"))
        if usage is None:
            meter = Meter(prompt_tokens, source="tokenizer", count_text=self.tokenizer.count_text)
            meter.text.append(text)
            meter.finish_reason = finish_reason
            usage = self._final_usage(None, request, meter)
        return Completion(text, usage, finish_reason)

    # --- the request, with retries before the first token -------------------

    def _body(self, request: GenerationRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.as_dict() for m in request.messages],
            self._max_tokens_param: request.max_tokens,
            "temperature": request.temperature,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if stream:
            body["stream"] = True
            if self._stream_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    def _open(self, body: dict[str, Any]) -> httpx.Response:
        """Send the request and return the open response once its status is a success."""
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                request = self._client.build_request("POST", "chat/completions", json=body)
                response = self._client.send(request, stream=True)
            except _NOT_SENT as exc:
                failure: Exception = ProviderUnavailable(f"cannot reach {self.base_url}: {exc}")
            except httpx.TimeoutException as exc:
                raise ProviderUnavailable(f"{self.base_url} did not answer in time: {exc}") from exc
            except httpx.HTTPError as exc:
                raise ProviderUnavailable(f"{self.base_url} failed to answer: {exc}") from exc
            else:
                if response.is_success:
                    return response
                text = _read_error(response)
                if "stream_options" in body and "stream_options" in text:
                    # A server that rejects the option: ask again without it (and
                    # never again); nothing was generated.
                    self._stream_usage = False
                    body = {k: v for k, v in body.items() if k != "stream_options"}
                    continue
                failure = ProviderResponseError(
                    f"{self.base_url} answered {response.status_code}: {text[:200]}",
                    status=response.status_code,
                    body=text,
                )
                if response.status_code not in RETRY_STATUSES:
                    raise failure
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt >= self._max_retries:
                raise failure
            time.sleep(self._delay(attempt, retry_after))
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        # Full jitter keeps many workers from retrying in step.
        return random.uniform(0, min(self._max_backoff, self._backoff * 2**attempt))


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event; comments and other fields are skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment, e.g. a keep-alive ping
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _reported_usage(usage: Mapping[str, Any] | None) -> Usage | None:
    if not usage:
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt, completion, "provider")


def _read_error(response: httpx.Response) -> str:
    try:
        return response.read().decode("utf-8", errors="replace")
    except httpx.HTTPError:
        return ""
    finally:
        response.close()


def _retry_after(value: str | None) -> float | None:
    # Only the delay-seconds form; an HTTP date falls back to our own backoff.
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
