"""``MockProvider``: a provider that answers at once, for tests and benchmarks.

Like httpx's ``MockTransport``: the real interface with a scripted answer.
It has no model, so it counts whitespace-separated words as tokens (and a
fixed 3 per message), a rule of its own that is only ever used with it: never
for billing a real model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from chatmeter.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStream,
    Meter,
    PartialGeneration,
    Provider,
    StreamEvent,
    TextDelta,
)

Answer = str | Callable[[GenerationRequest], str]


class MockProvider(Provider):
    """Answers with ``answer`` (or ``answer(request)``), one word per token."""

    name = "mock"

    def __init__(
        self,
        answer: Answer = "Hello from the mock model.",
        *,
        model: str = "mock",
        context_window: int = 2048,
        fail_after: int | None = None,
    ) -> None:
        self.model = model
        self._answer = answer
        self._context_window = context_window
        self._fail_after = fail_after  # break the stream after this many tokens
        self.requests: list[GenerationRequest] = []

    @property
    def context_window(self) -> int:
        return self._context_window

    @staticmethod
    def count_text(text: str) -> int:
        return len(text.split())

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(3 + self.count_text(m.content) for m in messages)

    def stream(self, request: GenerationRequest) -> GenerationStream:
        meter = Meter(prompt_tokens=self.count_prompt_tokens(request.messages))
        self.check_fits(meter.prompt_tokens)
        self.requests.append(request)
        answer = self._answer(request) if callable(self._answer) else self._answer
        return GenerationStream(self._events(answer, request, meter), meter=meter)

    def _events(
        self, answer: str, request: GenerationRequest, meter: Meter
    ) -> Iterator[StreamEvent]:
        words = answer.split()
        meter.finish_reason = "stop" if len(words) <= request.max_tokens else "length"
        for index, word in enumerate(words[: request.max_tokens]):
            if self._fail_after is not None and index == self._fail_after:
                raise PartialGeneration("the mock broke off", usage=meter.usage())
            meter.completion_tokens += 1
            yield TextDelta(word if index == 0 else " " + word)
        yield meter.usage()
