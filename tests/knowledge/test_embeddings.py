"""The real all-MiniLM-L6-v2, offline: shapes, unit length, determinism and meaning."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from chatmeter.knowledge import embeddings
from chatmeter.knowledge.embeddings import DIMENSIONS, Embedder, MiniLMEmbedder, Precision

PASSAGES = [
    "One package holds 50,000 tokens and costs 20 euros.",
    "Refunds are possible within 14 days of the purchase.",
    "To add the chat widget to your website, paste the embed snippet before </body>.",
    "Upload PDF, Word, Markdown, HTML, CSV or text files to train your assistant.",
    "Tomorrow will be sunny with a light breeze from the west.",
    "Slowly fold the whipped egg whites into the chocolate mixture.",
]
QUESTIONS = [
    ("How many tokens are in one package?", 0),
    ("Can I get my money back?", 1),
    ("How do I put the chatbot on my site?", 2),
    ("Which file types can I train on?", 3),
]


def test_an_embedder_by_protocol(embedder: MiniLMEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dimensions == DIMENSIONS == 384
    assert embedder.name == "sentence-transformers/all-MiniLM-L6-v2"


def test_vectors_are_float32_unit_length_rows(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(PASSAGES)

    assert vectors.shape == (len(PASSAGES), DIMENSIONS)
    assert vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_nothing_to_embed_is_an_empty_matrix(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]).shape == (0, DIMENSIONS)


# Enough passages that one call reads more than NUMPY_TOKENS tokens: torch embeds them.
MANY = [f"{passage} (copy {i})" for i in range(30) for passage in PASSAGES]


@pytest.mark.model
@pytest.mark.parametrize(("precision", "tolerance"), [("float32", 1e-5), ("auto", 3e-3)])
def test_same_text_same_vector_whatever_the_batch(precision: Precision, tolerance: float) -> None:
    embedder = MiniLMEmbedder(precision=precision)
    numpy_made = embedder.embed(PASSAGES)
    torch_made = embedder.embed(MANY)[: len(PASSAGES)]
    alone = np.vstack([embedder.embed([text]) for text in MANY[: len(PASSAGES)]])

    assert sum(map(embedder.count_tokens, MANY)) > embeddings.NUMPY_TOKENS
    assert sum(map(embedder.count_tokens, PASSAGES)) <= embeddings.NUMPY_TOKENS
    assert np.array_equal(numpy_made, embedder.embed(PASSAGES))
    assert np.array_equal(torch_made, embedder.embed(MANY)[: len(PASSAGES)])
    # Padding to the batch's longest text, or the other engine: nothing but rounding
    # (and bfloat16's, when torch computes in it).
    np.testing.assert_allclose(alone, torch_made, atol=tolerance)
    np.testing.assert_allclose(numpy_made, embedder.embed(PASSAGES[::-1])[::-1], atol=1e-6)


@pytest.mark.model
def test_bfloat16_and_float32_vectors_can_be_searched_together() -> None:
    wide = MiniLMEmbedder(precision="float32").embed(MANY)
    narrow = MiniLMEmbedder(precision="bfloat16").embed(MANY)
    questions = MiniLMEmbedder(precision="bfloat16").embed(MANY[:6])  # numpy: float32

    assert not np.array_equal(wide, narrow)
    assert np.min(np.sum(wide * narrow, axis=1)) > 0.9999
    assert np.min(np.sum(questions * narrow[:6], axis=1)) > 0.9999


@pytest.mark.model
def test_a_process_that_embeds_short_texts_needs_no_torch() -> None:
    """A web process embeds questions and passage sentences: numpy alone, on one BLAS thread."""
    script = """
import sys
from threadpoolctl import threadpool_info
from chatmeter.knowledge.embeddings import MiniLMEmbedder
embedder = MiniLMEmbedder()
embedder.embed(["How many tokens are in one package?"])
embedder.embed(["One package holds 50,000 tokens.", "Refunds within 14 days."] * 30)
blas = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
print(sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules))
print(sorted(blas))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "[1]"], done.stderr


@pytest.mark.parametrize(("question", "answer"), QUESTIONS)
def test_a_question_is_nearest_to_the_passage_that_answers_it(
    embedder: MiniLMEmbedder, question: str, answer: int
) -> None:
    passages = embedder.embed(PASSAGES)
    [query] = embedder.embed([question])
    similarity = passages @ query

    assert int(np.argmax(similarity)) == answer
    unrelated = [s for i, s in enumerate(similarity) if i != answer]
    assert similarity[answer] - max(unrelated) > 0.2


def test_token_counts_match_the_model_tokenizer(embedder: MiniLMEmbedder) -> None:
    model = embeddings._MODEL.get()
    texts = [
        "",
        "Hello, world!",
        "Café déjà vu — naïve 東京 🙂",
        "word " * 400,
        "Billing › Packages\nOne package holds 50,000 tokens.",
    ]
    for text in texts:
        expected = len(model.tokenizer(text, truncation=False)["input_ids"])
        assert embedder.count_tokens(text) == expected
    assert embedder.count_tokens("word " * 400) == 402  # counted past the 256 window


def test_threads_share_one_model_and_get_the_same_vectors(embedder: MiniLMEmbedder) -> None:
    expected = embedder.embed(PASSAGES[:2])
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(MiniLMEmbedder(batch_size=1).embed(PASSAGES[:2]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


def test_lazy_value_is_built_once_when_threads_race() -> None:
    calls: list[int] = []

    def build() -> object:
        calls.append(1)
        time.sleep(0.05)
        return object()

    lazy = embeddings._Lazy(build)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(lazy.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len({id(value) for value in seen}) == 1
