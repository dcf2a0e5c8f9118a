"""The numpy forward pass gives sentence-transformers' vectors: the real model, both ways, with
its layers in numpy and through ONNX Runtime (``minilm_onnx``)."""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from chatmeter.knowledge import embeddings, minilm_numpy, minilm_onnx
from chatmeter.knowledge.embeddings import WINDOW, model_path
from chatmeter.knowledge.minilm_numpy import MiniLM

pytestmark = pytest.mark.model

LONG = (
    "Each package holds a fixed number of tokens; unused tokens carry over to the next "
    "month, and a refund is possible within fourteen days of a purchase. "
) * 12  # ~370 tokens: cut at the window
TEXTS = [
    "How many tokens are in one package?",
    "Refunds are possible within 14 days of the purchase.",
    "Café déjà vu — naïve 東京 🙂 Ünïcödé, ½ € ™",
    "Привет! Как дела? مرحبا 你好世界",
    "word " * 400,  # 402 tokens counted, 256 read
    LONG,
    "",
    "   ",
    "?!",
    "a",
    "  Leading and trailing whitespace, a\ttab and a\nnewline.  ",
    "UPPER case and lower case and 1,234.56 numbers",
    "To add the chat widget to your website, paste the embed snippet before </body>.",
]


@pytest.fixture(scope="module")
def numpy_model() -> MiniLM:
    """The layers in numpy."""
    return MiniLM.from_directory(model_path(), window=WINDOW, engine="numpy")


@pytest.fixture(scope="module")
def onnx_model() -> MiniLM:
    """The layers through ONNX Runtime, what the embedder uses."""
    return MiniLM.from_directory(model_path(), window=WINDOW, engine="onnx")


@pytest.fixture(params=["numpy", "onnx"])
def model(request: pytest.FixtureRequest) -> MiniLM:
    """Each engine in turn."""
    return request.getfixturevalue(f"{request.param}_model")  # type: ignore[no-any-return]


def encoded(texts: list[str], *, narrow: bool = False) -> np.ndarray:
    """sentence-transformers' own vectors: ``encode`` on the float32 model (autocast for
    bfloat16), padded batches of 32 as the training path makes them."""
    model = embeddings._MODEL.get()
    with embeddings._ENCODING, torch.autocast("cpu", dtype=torch.bfloat16, enabled=narrow):
        vectors = model.encode(texts, batch_size=32, convert_to_numpy=True)
    return vectors.astype(np.float32)  # type: ignore[no-any-return]


def test_the_vectors_are_sentence_transformers_float32_ones(model: MiniLM) -> None:
    vectors = model.embed(TEXTS)  # one padded batch: short texts beside 256 tokens
    expected = encoded(TEXTS)

    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-5)
    assert np.min(np.sum(vectors * expected, axis=1)) >= 0.99999


def test_a_text_alone_gets_the_vector_it_gets_in_a_padded_batch(model: MiniLM) -> None:
    together = model.embed(TEXTS)
    alone = np.vstack([model.embed([text]) for text in TEXTS])
    few_at_a_time = model.embed(TEXTS, batch_size=3)

    np.testing.assert_allclose(alone, together, rtol=0, atol=1e-6)
    np.testing.assert_allclose(few_at_a_time, together, rtol=0, atol=1e-6)


def test_the_model_reads_the_tokens_sentence_transformers_reads(numpy_model: MiniLM) -> None:
    model = embeddings._MODEL.get()
    with embeddings._ENCODING:
        features = model.preprocess(TEXTS)
    for ids, mask, mine in zip(
        features["input_ids"].tolist(),
        features["attention_mask"].tolist(),
        numpy_model.tokenize(TEXTS),
        strict=True,
    ):
        assert mine == ids[: sum(mask)]
    assert len(numpy_model.tokenize(["word " * 400])[0]) == WINDOW


@pytest.mark.parametrize(
    "mutant",
    ["tanh GELU", "padding attended", "padding pooled"],
)
def test_a_wrong_step_would_fail_the_comparison(
    numpy_model: MiniLM, monkeypatch: pytest.MonkeyPatch, mutant: str
) -> None:
    """The 1e-5 tolerance above catches each of these mistakes (the tanh GELU: by 5e-4)."""
    expected = encoded(TEXTS)
    if mutant == "tanh GELU":

        def tanh_gelu(x: np.ndarray) -> None:
            x *= 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

        monkeypatch.setattr(minilm_numpy, "_gelu", tanh_gelu)
        wrong = numpy_model.embed(TEXTS)
    else:
        forward = numpy_model._forward

        def forward_without_the_mask(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            if mutant == "padding attended":
                original = minilm_numpy._softmax

                def softmax_ignoring_padding(scores: np.ndarray) -> None:
                    scores[scores < -1e30] = 0.0  # as if the mask had not been added
                    original(scores)

                monkeypatch.setattr(minilm_numpy, "_softmax", softmax_ignoring_padding)
                return forward(ids, mask)
            return forward(ids, np.ones_like(mask))

        monkeypatch.setattr(numpy_model, "_forward", forward_without_the_mask)
        wrong = numpy_model.embed(TEXTS)

    assert np.max(np.abs(wrong - expected)) > 1e-4  # ten times the tolerance, at least


def test_bfloat16_vectors_can_be_searched_with_numpy_ones(model: MiniLM) -> None:
    """Passages embedded by torch in bfloat16 (training, on a CPU that has it) and questions
    embedded here in float32 meet in one index."""
    narrow = encoded(TEXTS, narrow=True)
    assert np.min(np.sum(model.embed(TEXTS) * narrow, axis=1)) > 0.9999


def test_erf_is_the_error_function_to_float32_precision() -> None:
    x = np.linspace(-6, 6, 120_001, dtype=np.float32)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])

    assert np.max(np.abs(minilm_numpy.erf(x) - exact)) < 5e-7
    assert minilm_numpy.erf(x).dtype == np.float32


def test_weights_in_pytorch_format_give_the_same_vectors(
    numpy_model: MiniLM, tmp_path: Path
) -> None:
    """A model directory without model.safetensors is read through torch."""
    source = model_path()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source / name, tmp_path / name)
    weights = minilm_numpy.read_weights(source)
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / "pytorch_model.bin")

    assert minilm_numpy.read_weights(tmp_path).keys() == weights.keys()
    from_pytorch = MiniLM.from_directory(tmp_path, window=WINDOW, engine="numpy")
    assert np.array_equal(from_pytorch.embed(TEXTS[:4]), numpy_model.embed(TEXTS[:4]))


def test_a_model_of_another_kind_is_refused(tmp_path: Path) -> None:
    source = model_path()
    config: dict[str, Any] = json.loads((source / "config.json").read_text())
    config["hidden_act"] = "gelu_new"  # the tanh approximation: not what this computes
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(source / "tokenizer.json", tmp_path / "tokenizer.json")
    shutil.copy(source / "model.safetensors", tmp_path / "model.safetensors")

    with pytest.raises(ValueError, match="hidden_act"):
        MiniLM.from_directory(tmp_path, window=WINDOW)


def test_threads_embed_at_once(model: MiniLM) -> None:
    expected = model.embed(TEXTS)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(model.embed(TEXTS))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 4
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)


def test_both_engines_give_the_same_vectors(numpy_model: MiniLM, onnx_model: MiniLM) -> None:
    assert (numpy_model.engine, onnx_model.engine) == ("numpy", "onnx")
    for batch_size in (32, 3, 1):
        np.testing.assert_allclose(
            onnx_model.embed(TEXTS, batch_size=batch_size),
            numpy_model.embed(TEXTS, batch_size=batch_size),
            rtol=0,
            atol=1e-6,
        )


def test_a_wrong_operator_in_the_graph_would_fail_the_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The graph is held to the same tolerance: its GELU as the tanh approximation fails it."""
    monkeypatch.setattr(minilm_onnx, "GELU", "FastGelu")
    wrong = MiniLM.from_directory(model_path(), window=WINDOW, engine="onnx").embed(TEXTS)

    assert np.max(np.abs(wrong - encoded(TEXTS))) > 1e-4


def test_the_embedder_uses_onnx_runtime_when_it_is_installed() -> None:
    """It is a dependency, so this is what every web process runs."""
    assert minilm_onnx.available()
    assert MiniLM.from_directory(model_path(), window=WINDOW).engine == "onnx"
    assert embeddings._NUMPY_MODEL.get().engine == "onnx"
