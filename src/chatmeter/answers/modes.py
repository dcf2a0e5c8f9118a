"""How a turn answers: the customer's correction, quotes, a checked or free generation,
or the fallback.

``plan`` decides before anything is reserved, so the hold of a turn whose answer
is known already (a correction, quotes, the fallback) is exactly what it costs.
The order of preference:

1. a correction whose question is near enough (``matching``): its answer, as written;
2. nothing retrieved, or the passages do not answer the question confidently
   enough (``grounding.confidence`` below ``grounding.ANSWER_THRESHOLD``): the fallback;
3. the assistant's mode: ``quotes`` composes the best-supported sentences;
   ``checked`` and ``generated`` let the model write (``checked`` then drops
   every sentence the passages do not support, and falls back if none is left).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from chatmeter.answers import grounding
from chatmeter.answers.grounding import Embed, PassageView
from chatmeter.answers.matching import Match


class AnswerMode(StrEnum):
    QUOTES = "quotes"
    CHECKED = "checked"
    GENERATED = "generated"


DEFAULT_MODE = AnswerMode.QUOTES  # chosen by bench/answers.py: docs/benchmarks.md, "Answers"

# What the panel says of each mode, in a business's words.
MODE_LABELS = {
    AnswerMode.QUOTES: "Quote the documents (most reliable)",
    AnswerMode.CHECKED: "Write an answer, keep only what the documents support",
    AnswerMode.GENERATED: "Write freely from the documents (may state wrong facts)",
}


class Kind(StrEnum):
    """How an answer was made; stored on the message (``Message.answer_kind``)."""

    CORRECTED = "corrected"
    QUOTES = "quotes"
    CHECKED = "checked"
    GENERATED = "generated"
    ABSTAINED = "abstained"


def fallback_text(custom: str, contact_email: str) -> str:
    """What an assistant says when it does not know."""
    if custom.strip():
        return custom.strip()
    if contact_email:
        return (
            "I'm not sure about that, and I would rather not guess. "
            f"Please write to us at {contact_email}."
        )
    return "I'm not sure about that, and I would rather not guess."


@dataclass(frozen=True)
class Plan:
    kind: Kind
    # The answer, when it is known before the model runs (corrected, quotes,
    # abstained); "" when the model writes it.
    text: str
    # How confidently the passages answer (``grounding.confidence``; 0 when none was
    # retrieved; a correction's similarity to the question).
    support: float


class SentenceVectors:
    """Embeddings of passage sentences, remembered: the same passages come back turn
    after turn, and embedding them is most of what composing an answer costs. Used for
    the passages whose sentences training did not store (``grounding.sentence_vectors``)."""

    def __init__(self, embed: Embed, *, size: int = 20_000) -> None:
        self._embed = embed
        self._size = size
        self._kept: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many sentences' vectors are remembered."""
        with self._lock:
            return len(self._kept)

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            known = {t: self._kept[t] for t in texts if t in self._kept}
            for text in known:
                self._kept.move_to_end(text)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = self._embed(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._kept[text] = vector
                    known[text] = vector
                while len(self._kept) > self._size:
                    self._kept.popitem(last=False)
        if not texts:
            return np.empty((0, 0), np.float32)
        return np.stack([known[t] for t in texts]).astype(np.float32, copy=False)


def plan(
    *,
    mode: str,
    question: str,
    question_vector: npt.NDArray[np.float32],
    passages: Sequence[PassageView],
    passage_cosine: float,
    correction: Match | None,
    fallback: str,
    embed_sentences: Embed,
    fits: Callable[[str], bool],
) -> Plan:
    """How this turn answers (see the module's docstring). ``passage_cosine``: the
    question's cosine with the nearest of ``passages`` (their stored vectors)."""
    if correction is not None:
        return Plan(Kind.CORRECTED, correction.answer, correction.similarity)
    found = grounding.sentences(passages)
    if not found:
        return Plan(Kind.ABSTAINED, fallback, 0.0)
    vectors = grounding.sentence_vectors(passages, found, embed_sentences)
    scored = grounding.support(question, question_vector, passages, found, vectors)
    sure = grounding.confidence(scored, passage_cosine)
    if sure < grounding.ANSWER_THRESHOLD:
        return Plan(Kind.ABSTAINED, fallback, sure)
    if mode == AnswerMode.QUOTES:
        quoted = grounding.compose(scored, fits=fits)
        if not quoted:
            return Plan(Kind.ABSTAINED, fallback, sure)
        return Plan(Kind.QUOTES, quoted, sure)
    return Plan(Kind.CHECKED if mode == AnswerMode.CHECKED else Kind.GENERATED, "", sure)
