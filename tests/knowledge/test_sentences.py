"""Sentences' vectors as training stores them: given back only for the same sentences."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatmeter.answers import grounding
from chatmeter.answers.grounding import PassageView
from chatmeter.knowledge.sentences import DIGEST_BYTES, digest, pack, split, unpack

TEXT = "Tokens come in packages of 5,000. They renew on the 1st. Unused ones expire."


def unit_rows(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).normal(size=(count, 384)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_stored_vectors_come_back_for_the_same_sentences_within_float16() -> None:
    said = split(TEXT)
    assert said == [
        "Tokens come in packages of 5,000.",
        "They renew on the 1st.",
        "Unused ones expire.",
    ]
    vectors = unit_rows(len(said))

    stored = pack(said, vectors)
    back = unpack(stored, said)

    assert len(stored) == DIGEST_BYTES + 2 * 384 * len(said)  # half of float32
    assert back is not None and back.dtype == np.float32 and back.shape == (3, 384)
    assert float(np.min(np.sum(back * vectors, axis=1))) > 0.9999


@pytest.mark.parametrize(
    "other",
    [
        ["Tokens come in packages of 5,000.", "They renew on the 2nd.", "Unused ones expire."],
        ["Tokens come in packages of 5,000.", "They renew on the 1st."],
        ["They renew on the 1st.", "Tokens come in packages of 5,000.", "Unused ones expire."],
        [],
    ],
)
def test_stored_vectors_are_never_given_for_other_sentences(other: list[str]) -> None:
    assert unpack(pack(split(TEXT), unit_rows(3)), other) is None


def test_nothing_stored_or_a_damaged_block_gives_nothing() -> None:
    said = split(TEXT)
    stored = pack(said, unit_rows(3))
    assert unpack(None, said) is None
    assert unpack(b"", said) is None
    assert unpack(stored[:-1], said) is None  # cut short
    assert unpack(stored[:DIGEST_BYTES], said) is None  # no rows
    assert unpack(bytes(DIGEST_BYTES) + stored[DIGEST_BYTES:], said) is None  # other digest


def test_pack_refuses_vectors_that_are_not_one_row_per_sentence() -> None:
    with pytest.raises(ValueError, match="3 sentences"):
        pack(split(TEXT), unit_rows(2))


@given(st.lists(st.text(max_size=30), max_size=4), st.lists(st.text(max_size=30), max_size=4))
def test_the_digest_tells_lists_of_sentences_apart(a: list[str], b: list[str]) -> None:
    # Lengths are part of what is hashed: ["ab", "c"] and ["a", "bc"] differ.
    assert (digest(a) == digest(b)) == (a == b)


class Counting:
    """The real work of an embedder is not needed here: each text's vector is made from
    its hash, and every text asked for is recorded."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.asked.extend(texts)
        return np.stack([unit_rows(1, seed=sum(map(ord, t)))[0] for t in texts])


def test_grounding_reads_stored_vectors_and_embeds_only_the_passages_without_them() -> None:
    fresh_text = "Delete a file and its passages go. The assistant forgets them at once."
    stale_text = "Widgets load fast. They are small."
    embed = Counting()
    stale = pack(["Widgets load fast.", "They were small."], unit_rows(2))  # other sentences
    passages = [
        PassageView("Buying", TEXT, pack(split(TEXT), embed(split(TEXT)))),
        PassageView("Training", fresh_text),
        PassageView("Widget", stale_text, stale),
    ]
    embed.asked.clear()
    found = grounding.sentences(passages)

    vectors = grounding.sentence_vectors(passages, found, embed)

    assert embed.asked == split(fresh_text) + split(stale_text)  # not the stored passage
    expected = Counting()([s.text for s in found])
    assert vectors.shape == (len(found), 384)
    assert float(np.min(np.sum(vectors * expected, axis=1))) > 0.9999  # each its own row
