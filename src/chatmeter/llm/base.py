"""The provider interface: one small abstract class, shaped like httpx's transport.

A provider turns a list of chat messages into an answer and says exactly how
many model tokens that took. The chat pipeline counts the prompt first
(``count_prompt_tokens``) to reserve, then streams (``stream``) or waits for
the whole answer (``complete``), then settles the ``Usage`` it got back.

Exceptions, each with the HTTP status the web layer maps it to:

    ChatmeterError
    └── ProviderError (502 provider_error)
        ├── ProviderUnavailable (503 provider_unavailable)
        │       no answer: could not connect, or timed out before answering;
        │       nothing was received, so nothing is to be charged
        ├── ProviderResponseError (502 provider_response_error)
        │       the provider answered with an error status (4xx/5xx) or an
        │       answer that cannot be read; nothing was generated
        ├── ContextWindowExceeded (422 context_window_exceeded)
        │       the prompt does not fit the model; raised before calling it
        └── PartialGeneration (502 partial_generation)
                the answer broke off part-way; ``usage`` is what was consumed
                up to the break (the prompt, and the tokens generated, which
                may be none), so the caller settles exactly that

Retries happen inside the providers and only before the first token: once
output has been produced, a failure is a ``PartialGeneration`` and is never
retried, so nothing is generated (and charged) twice. A failure before the
first token is raised by ``stream()`` itself or by the first ``next()`` (the
local model starts when the stream is first read): handle both alike.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from chatmeter.errors import ChatmeterError

Role = Literal["system", "user", "assistant"]
UsageSource = Literal["provider", "tokenizer"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown role {self.role!r}")

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float = 0.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Callers pass lists; a tuple keeps the request hashable and immutable.
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "stop", tuple(self.stop))
        if not self.messages:
            raise ValueError("a request needs at least one message")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise ValueError("max_tokens must be a whole number")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")


@dataclass(frozen=True, slots=True)
class Usage:
    """Model tokens consumed: the prompt as the model saw it, and the tokens it generated."""

    prompt_tokens: int
    completion_tokens: int
    source: UsageSource

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


StreamEvent = TextDelta | Usage


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage
    finish_reason: str  # "stop", "length", or whatever the provider said


# --- the exception tree -----------------------------------------------------


class ProviderError(ChatmeterError):
    status_code = 502
    code = "provider_error"


class ProviderUnavailable(ProviderError):
    status_code = 503
    code = "provider_unavailable"


class ProviderResponseError(ProviderError):
    code = "provider_response_error"

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message, status=status)
        self.status = status
        self.body = body[:2000]  # enough to diagnose, never a whole page in a log


class ContextWindowExceeded(ProviderError):
    status_code = 422
    code = "context_window_exceeded"


class PartialGeneration(ProviderError):
    code = "partial_generation"

    def __init__(self, message: str, *, usage: Usage, text: str = "") -> None:
        super().__init__(
            message,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )
        self.usage = usage
        self.text = text


# --- a stream and the provider ----------------------------------------------


@dataclass
class Meter:
    """What a generation has consumed so far; a provider updates it as tokens arrive."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    source: UsageSource = "provider"
    finish_reason: str | None = None
    # Set when the provider sends only text (the deltas go to ``text``):
    # completion tokens are then counted from what was received so far.
    count_text: Callable[[str], int] | None = field(default=None, repr=False)
    text: list[str] = field(default_factory=list, repr=False)

    def usage(self) -> Usage:
        completion = self.completion_tokens
        if self.count_text is not None:
            # Two lower bounds, take the closer: every delta carries at least
            # one token, and the tokenizer's count of the text misses tokens
            # when the model generated a split the tokenizer would not make
            # ("end" + "a" for "enda"), which a model does now and then.
            completion = max(len(self.text), self.count_text("".join(self.text)))
        return Usage(self.prompt_tokens, completion, self.source)


class GenerationStream(Iterator[StreamEvent]):
    """An answer being generated: ``TextDelta`` events, then one final ``Usage``.

    ``usage`` is what has been consumed so far, also after the caller stops
    reading (a visitor who disconnects is settled for what was generated).
    Close it, or use it as a context manager, to stop generation early.
    """

    def __init__(
        self,
        events: Iterator[StreamEvent],
        *,
        meter: Meter,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._events = events
        self._meter = meter
        # Runs also when the events were never started (a generator's own
        # cleanup would not), e.g. to release an open HTTP response.
        self._on_close = on_close
        self._text: list[str] = []

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> StreamEvent:
        event = next(self._events)
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        return event

    @property
    def usage(self) -> Usage:
        return self._meter.usage()

    @property
    def finish_reason(self) -> str | None:
        """Why generation ended ("stop", "length", ...); ``None`` until it has."""
        return self._meter.finish_reason

    @property
    def text(self) -> str:
        return "".join(self._text)

    def close(self) -> None:
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            if self._on_close is not None:
                self._on_close()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Provider(abc.ABC):
    """A language model that answers chat messages and counts its tokens exactly."""

    name: str
    model: str

    @property
    @abc.abstractmethod
    def context_window(self) -> int:
        """Tokens the model can hold: prompt and answer together."""

    @abc.abstractmethod
    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the prompt exactly as the model will see it, chat template included."""

    @abc.abstractmethod
    def stream(self, request: GenerationRequest) -> GenerationStream:
        """Start generating; the stream yields text deltas and finally the ``Usage``."""

    def complete(self, request: GenerationRequest) -> Completion:
        """The whole answer at once."""
        with self.stream(request) as stream:
            usage = None
            for event in stream:
                if isinstance(event, Usage):
                    usage = event
            assert usage is not None, "a finished stream ends with its usage"
            return Completion(stream.text, usage, stream.finish_reason or "stop")

    def close(self) -> None:  # noqa: B027  (an optional hook, as in httpx's BaseTransport)
        """Release connections; the provider is not used afterwards."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check_fits(self, prompt_tokens: int) -> None:
        """Raise ``ContextWindowExceeded`` unless the prompt leaves room for an answer."""
        if prompt_tokens >= self.context_window:
            raise ContextWindowExceeded(
                f"the prompt takes {prompt_tokens} tokens; the model holds {self.context_window}",
                prompt_tokens=prompt_tokens,
                context_window=self.context_window,
            )
