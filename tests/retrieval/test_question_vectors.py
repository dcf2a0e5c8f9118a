"""A visitor's question is embedded in numpy: the vector encode gives, cached."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from chatmeter.knowledge import embeddings
from chatmeter.knowledge.embeddings import MiniLMEmbedder, Precision

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder

QUESTION = "How many tokens are in one package?"


def encoded(text: str, *, narrow: bool) -> np.ndarray:
    """The vector as ``encode`` on the float32 model makes it (autocast for bfloat16)."""
    model = embeddings._MODEL.get()
    with embeddings._ENCODING:
        if narrow:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                vector = model.encode([text], convert_to_numpy=True, show_progress_bar=False)[0]
        else:
            vector = model.encode([text], convert_to_numpy=True, show_progress_bar=False)[0]
    vector = vector.astype(np.float32)
    return vector / np.linalg.norm(vector)  # type: ignore[no-any-return]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_question_gets_the_float32_vector_encode_gives(precision: Precision) -> None:
    """Whatever torch's precision, a question is embedded in numpy, in float32."""
    embeddings._QUESTIONS.clear()
    [vector] = MiniLMEmbedder(precision=precision).embed([QUESTION])
    np.testing.assert_allclose(vector, encoded(QUESTION, narrow=False), rtol=0, atol=1e-6)
    # and meets the passages torch embedded in bfloat16
    assert float(vector @ encoded(QUESTION, narrow=True)) > 0.9999


def test_the_bfloat16_copy_leaves_the_float32_model_alone() -> None:
    narrow, wide = embeddings._BFLOAT16_MODEL.get(), embeddings._MODEL.get()
    assert {p.dtype for p in wide.parameters()} == {torch.float32}
    assert torch.bfloat16 in {p.dtype for p in narrow.parameters()}
    assert narrow.tokenizer is wide.tokenizer  # shared, as is everything but the linear layers


def test_a_repeated_question_comes_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    embeddings._QUESTIONS.clear()
    embedder = MiniLMEmbedder()
    first = embedder.embed([QUESTION])
    first[0, 0] = 42.0  # the caller's copy: the cache keeps its own

    def no_model() -> Any:
        raise AssertionError("the model ran for a cached question")

    monkeypatch.setattr(embeddings._NUMPY_MODEL, "get", no_model)
    monkeypatch.setattr(embeddings._MODEL, "get", no_model)
    monkeypatch.setattr(embeddings._BFLOAT16_MODEL, "get", no_model)
    again = embedder.embed([QUESTION])
    assert again[0, 0] != 42.0
    assert np.isclose(np.linalg.norm(again[0]), 1.0)
