"""all-MiniLM-L6-v2's forward pass in numpy: sentence vectors without torch.

The model is a small BERT (6 layers, hidden size 384, 12 heads, feed-forward
1536, GELU with the exact erf) whose token states are averaged over the text's
tokens and scaled to length 1, as sentence-transformers does. Here that is a
few dozen numpy operations on weights read once from the model's own files
(``model.safetensors``, or ``pytorch_model.bin`` through torch when that is
all there is) and its own ``tokenizer.json``, truncated at the same window with
the same special tokens. The vectors are sentence-transformers' float32 ones
to within float32 rounding (``tests/knowledge/test_minilm_numpy.py``).

Why: a short text is little work, and torch is heavy for it. Its module
calls and kernel dispatch cost about as much as the arithmetic, its threads
wait for busy cores, and importing it costs a web process hundreds of
megabytes. A few matrix products through numpy's BLAS take a question a little
longer than torch in bfloat16 on a CPU that has it, less than its float32,
and a few dozen short sentences a quarter of its time on a busy machine
(figures in ``docs/benchmarks.md``, "Overhead against a bare proxy").

The encoder layers, the bulk of the work, run through ONNX Runtime when it is
installed (``minilm_onnx``, ``engine``): the same operations on the same
weights, in under half the time for a question. The numpy loop here is the
fallback and the reference the tests hold that graph to.

Its products are best run on one thread (``hold_blas_to_one_thread``, which
the embedder calls when it loads the model): a question's are too small to
share between cores, and OpenBLAS's helper threads spin-wait for a core on a
busy machine (p99 0.7 s for a 12-token question on two threads, 18 ms on one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Floats = npt.NDArray[np.float32]
# Where the encoder layers run: ONNX Runtime (``minilm_onnx``) when it is installed, else
# the numpy loop below; "numpy" and "onnx" ask for one.
Engine = Literal["auto", "numpy", "onnx"]

# What this forward pass implements; a config.json that asks for anything else is refused.
_ARCHITECTURE = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}


@dataclass(frozen=True, slots=True)
class _Norm:
    weight: Floats
    bias: Floats
    eps: np.float32

    def __call__(self, x: npt.NDArray[Any]) -> Floats:
        """LayerNorm over the last axis, in place: (x - mean) / sqrt(var + eps) * weight + bias."""
        x -= x.mean(axis=-1, keepdims=True)
        variance = np.mean(np.square(x), axis=-1, keepdims=True)
        variance += self.eps
        x /= np.sqrt(variance)
        x *= self.weight
        x += self.bias
        return x


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer, each matrix transposed to (inputs, outputs): ``x @ m`` applies it."""

    qkv: Floats  # query, key and value side by side: one product instead of three
    qkv_bias: Floats
    attention_out: Floats
    attention_out_bias: Floats
    attention_norm: _Norm
    up: Floats
    up_bias: Floats
    down: Floats
    down_bias: Floats
    output_norm: _Norm


class MiniLM:
    """The weights and the tokenizer, read once; ``embed`` may be called from any thread."""

    def __init__(
        self,
        weights: Mapping[str, npt.NDArray[Any]],
        config: Mapping[str, Any],
        tokenizer: Tokenizer,
        *,
        engine: Engine = "auto",
    ) -> None:
        for key, value in _ARCHITECTURE.items():
            if config.get(key, value) != value:
                raise ValueError(f"config.json: {key} {config[key]!r}, this implements {value!r}")
        self.hidden: int = config["hidden_size"]
        self.heads: int = config["num_attention_heads"]
        eps = np.float32(config["layer_norm_eps"])

        def matrix(name: str) -> Floats:
            return np.ascontiguousarray(np.asarray(weights[name], dtype=np.float32).T)

        def vector(name: str) -> Floats:
            return np.asarray(weights[name], dtype=np.float32)

        def norm(prefix: str) -> _Norm:
            return _Norm(vector(f"{prefix}.weight"), vector(f"{prefix}.bias"), eps)

        self._words = vector("embeddings.word_embeddings.weight")
        self._positions = vector("embeddings.position_embeddings.weight")
        # One sentence per text: every token is of type 0.
        self._type = vector("embeddings.token_type_embeddings.weight")[0]
        self._embedding_norm = norm("embeddings.LayerNorm")
        self._layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            parts = [f"{p}.attention.self.{part}" for part in ("query", "key", "value")]
            self._layers.append(
                _Layer(
                    qkv=np.ascontiguousarray(np.hstack([matrix(f"{q}.weight") for q in parts])),
                    qkv_bias=np.concatenate([vector(f"{q}.bias") for q in parts]),
                    attention_out=matrix(f"{p}.attention.output.dense.weight"),
                    attention_out_bias=vector(f"{p}.attention.output.dense.bias"),
                    attention_norm=norm(f"{p}.attention.output.LayerNorm"),
                    up=matrix(f"{p}.intermediate.dense.weight"),
                    up_bias=vector(f"{p}.intermediate.dense.bias"),
                    down=matrix(f"{p}.output.dense.weight"),
                    down_bias=vector(f"{p}.output.dense.bias"),
                    output_norm=norm(f"{p}.output.LayerNorm"),
                )
            )
        self._tokenizer = tokenizer
        from chatmeter.knowledge import minilm_onnx

        self._encoder: minilm_onnx.Encoder | None = None
        if engine == "onnx" or (engine == "auto" and minilm_onnx.available()):
            self._encoder = minilm_onnx.Encoder(self._layers, heads=self.heads, hidden=self.hidden)
            self._layers = []  # ONNX Runtime keeps its own copy of the weights
        self.engine: str = "onnx" if self._encoder is not None else "numpy"

    @classmethod
    def from_directory(cls, directory: Path, *, window: int, engine: Engine = "auto") -> MiniLM:
        """The model in a sentence-transformers directory, reading at most ``window`` tokens a text.

        Like sentence-transformers, a longer text is cut to its first ``window - 2``
        tokens between ``[CLS]`` and ``[SEP]``.
        """
        from tokenizers import Tokenizer

        # Tokenizer threads don't survive fork(): a job runner that forks would hang.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.no_padding()  # padded here, to the batch's longest text
        tokenizer.enable_truncation(max_length=window)
        config = json.loads((directory / "config.json").read_text())
        return cls(read_weights(directory), config, tokenizer, engine=engine)

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> Floats:
        """An ``(len(texts), hidden)`` float32 array, each row of length 1."""
        return self.embed_tokens(self.tokenize(texts), batch_size=batch_size)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids the model reads for each text, special tokens included."""
        if not texts:
            return []
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]

    def embed_tokens(self, texts: Sequence[Sequence[int]], *, batch_size: int = 32) -> Floats:
        """``embed`` for texts already tokenized (``tokenize``).

        Texts of alike length go together, ``batch_size`` at a time, so that
        little is padded (sentence-transformers sorts them the same way).
        """
        vectors = np.zeros((len(texts), self.hidden), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            longest = len(texts[rows[-1]])
            ids = np.zeros((len(rows), longest), dtype=np.intp)
            mask = np.zeros((len(rows), longest), dtype=np.float32)
            for row, i in enumerate(rows):
                ids[row, : len(texts[i])] = texts[i]
                mask[row, : len(texts[i])] = 1.0
            vectors[rows] = self._forward(ids, mask)
        return vectors

    def _forward(self, ids: npt.NDArray[np.intp], mask: Floats) -> Floats:
        """Unit vectors for a padded batch: ``ids`` and ``mask`` (1 = a token, 0 = padding) are
        ``(texts, tokens)``."""
        texts, tokens = ids.shape
        x = self._words[ids]
        x += self._positions[:tokens]
        x += self._type
        x = self._embedding_norm(x.reshape(texts * tokens, self.hidden))
        # Padding gets no attention: the most negative float32 before the softmax, as in
        # transformers (not -inf, which turns a row without any token into NaN).
        padding = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        if self._encoder is not None:
            states = self._encoder(x.reshape(texts, tokens, self.hidden), padding)
        else:
            states = self._layers_in_numpy(x, padding, texts, tokens)
        # Mean over the text's tokens; the floor keeps sentence-transformers' clamp.
        pooled: Floats = np.einsum("tnh,tn->th", states, mask)
        pooled /= np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return pooled

    def _layers_in_numpy(self, x: Floats, padding: Floats, texts: int, tokens: int) -> Floats:
        """The encoder layers in numpy: token states ``(texts, tokens, hidden)`` for the
        embeddings ``x``, ``(texts * tokens, hidden)``."""
        heads, width = self.heads, self.hidden // self.heads
        scale = np.float32(1.0 / np.sqrt(width))
        for layer in self._layers:
            qkv = x @ layer.qkv
            qkv += layer.qkv_bias
            # (texts, tokens, 3, heads, width) -> three (texts, heads, tokens, width)
            q, k, v = qkv.reshape(texts, tokens, 3, heads, width).transpose(2, 0, 3, 1, 4)
            scores = q @ k.swapaxes(-1, -2)
            scores *= scale
            scores += padding
            _softmax(scores)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(texts * tokens, self.hidden)
            attended = context @ layer.attention_out
            attended += layer.attention_out_bias
            attended += x
            x = layer.attention_norm(attended)
            up = x @ layer.up
            up += layer.up_bias
            _gelu(up)
            down = up @ layer.down
            down += layer.down_bias
            down += x
            x = layer.output_norm(down)
        return x.reshape(texts, tokens, self.hidden)


def read_weights(directory: Path) -> dict[str, npt.NDArray[Any]]:
    """The model's tensors by name: from ``model.safetensors`` when it is there (no torch
    needed), else from ``pytorch_model.bin`` through torch."""
    safetensors = directory / "model.safetensors"
    if safetensors.exists():
        from safetensors.numpy import load_file

        return load_file(str(safetensors))
    import torch

    state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return {name: tensor.float().numpy() for name, tensor in state.items()}


def _softmax(scores: Floats) -> None:
    """Softmax over the last axis, in place."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)


# erf(x) = x * P(x^2) / Q(x^2) on [-4, 4], +-1 beyond (float32 rounds it to 1 there): the
# rational fit Eigen and XLA use for float32. Within 4.5e-7 of the true erf here, where
# SciPy's (double precision, then rounded) costs 3.5 times as much; a test holds it to that.
_ERF_P = [
    np.float32(c)
    for c in (
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    )
]
_ERF_Q = [
    np.float32(c)
    for c in (
        -1.45660718464996e-05,
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    )
]


def erf(x: Floats) -> Floats:
    """The error function of float32 values, elementwise (a new array)."""
    x = np.clip(x, np.float32(-4.0), np.float32(4.0))
    squared = np.square(x)
    p = np.full_like(x, _ERF_P[0])
    for c in _ERF_P[1:]:
        p *= squared
        p += c
    p *= x
    q = np.full_like(x, _ERF_Q[0])
    for c in _ERF_Q[1:]:
        q *= squared
        q += c
    p /= q
    return p


def _gelu(x: Floats) -> None:
    """GELU with erf, not the tanh approximation: x * (1 + erf(x / sqrt 2)) / 2, in place."""
    half = erf(x * np.float32(1.0 / np.sqrt(2.0)))
    half += np.float32(1.0)
    half *= np.float32(0.5)
    x *= half


def hold_blas_to_one_thread() -> None:
    """From now on, numpy's matrix products in this process run on the calling thread alone.

    For good, not around each call: OpenBLAS has one thread setting for the whole
    process, and threadpoolctl lets only the thread that last took hold of it
    change it (others are ignored in silence), so a setting lowered and restored
    per call by whichever thread embeds would not hold. A process that answers
    chats gains nothing from splitting its small products over cores; its
    parallelism is its requests.
    """
    from threadpoolctl import OpenBLASController, threadpool_limits

    OpenBLASController.clear_controlling_thread(force=True)  # or ours would be ignored
    threadpool_limits(limits=1, user_api="blas")
    OpenBLASController.clear_controlling_thread(force=True)  # nor hold anyone else's
