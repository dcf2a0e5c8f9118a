"""The training process embeds each passage's sentences for grounding, within a share of
the file's CPU allowance."""

from __future__ import annotations

import numpy as np
import pytest

from chatmeter.knowledge.embeddings import NUMPY_TOKENS, MiniLMEmbedder
from chatmeter.knowledge.sentences import split, unpack
from chatmeter.training.child import EMBED_BATCH, _calls, embed_sentences

pytestmark = pytest.mark.model

PASSAGES = [
    "Tokens come in packages of 5,000. They renew on the 1st of the month.",
    "# Widget\n\nPaste the snippet before </body>. It loads in the background.",
    "12 34",  # no sentence at all
] * 12  # more than one batch of EMBED_BATCH passages


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


class Recorded:
    """The real embedder, recording how many tokens each call held."""

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self.embedder = embedder
        self.calls: list[int] = []
        self.count_tokens = embedder.count_tokens

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(sum(map(self.count_tokens, texts)))
        return self.embedder.embed(texts)


def test_every_passage_gets_its_sentences_vectors(embedder: MiniLMEmbedder) -> None:
    assert len(PASSAGES) > EMBED_BATCH
    done: list[int] = []
    recorded = Recorded(embedder)

    packed = embed_sentences(PASSAGES, recorded, done.append, until=float("inf"))

    assert len(packed) == len(PASSAGES) and done[-1] == len(PASSAGES)
    # Every call small enough for numpy: torch's batches of ever new shapes grew the
    # training process's memory file after file.
    assert recorded.calls and max(recorded.calls) <= NUMPY_TOKENS
    for text, stored in zip(PASSAGES, packed, strict=True):
        said = split(text)
        if not said:
            assert stored == b""
            continue
        vectors = unpack(stored, said)
        assert vectors is not None
        assert float(np.min(np.sum(vectors * embedder.embed(said), axis=1))) > 0.999


def test_past_its_share_of_the_cpu_allowance_no_more_sentences_are_embedded(
    embedder: MiniLMEmbedder,
) -> None:
    # Already past: nothing is embedded, and the turn will embed these sentences itself.
    assert embed_sentences(PASSAGES, embedder, lambda _: None, until=0.0) == []

    # The CPU time, read before each batch, passes the mark after the first batch: that
    # batch is kept, the rest left to the turn.
    readings = iter([0.0, 10.0, 20.0])
    packed = embed_sentences(
        PASSAGES, embedder, lambda _: None, until=5.0, clock=lambda: next(readings)
    )
    assert len(packed) == EMBED_BATCH
    assert all(
        unpack(stored, split(text)) is not None
        for text, stored in zip(PASSAGES[:EMBED_BATCH], packed, strict=True)
        if split(text)
    )


def test_calls_keep_the_order_and_stay_within_their_tokens() -> None:
    texts = ["a" * n for n in (3, 4, 2, 9, 1, 1)]

    calls = _calls(texts, len, 6)

    assert calls == [["aaa"], ["aaaa", "aa"], ["a" * 9], ["a", "a"]]  # one longer text alone
    assert _calls([], len, 6) == []
