"""What the passages support: sentences, their support for a question, grounded answers.

Pure: the embedding model comes in as a function (``Embed``), so every rule
here is tested without a model, and the thresholds are the ones
``bench/answers.py`` chose on the evaluation set's dev half.

Three uses, one scale:

- ``support`` scores each sentence of the retrieved passages against the
  question: the cosine of their embeddings and the share of the question's
  content words the sentence (or its passage's heading) contains.
- ``confidence`` weighs the best sentence's support and the nearest passage's
  cosine into one figure; below ``ANSWER_THRESHOLD`` the assistant says it does
  not know.
- ``compose`` builds an answer of the best-supported sentences, quoted as the
  documents wrote them, each group followed by its source's label ("[1]").
- ``SentenceChecker`` checks a generated answer sentence by sentence: one is
  kept only if a passage sentence says nearly the same thing and every number
  and rare word it states is in the passages.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chatmeter.knowledge.sentences import split as split_sentences
from chatmeter.knowledge.sentences import unpack

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]

# Tuned on the dev half of bench/answers (see docs/benchmarks.md, "Answers").
ANSWER_THRESHOLD = 0.42  # confidence below this: abstain
SUPPORT_WEIGHT = 0.7  # confidence = SUPPORT_WEIGHT * best support + the rest * passage cosine
MAX_SENTENCES = 3  # best-supported sentences quoted, then their neighbours while they fit
CHECK_THRESHOLD = 0.72  # a generated sentence's cosine to its closest passage sentence
DENSE_WEIGHT = 0.5  # support = DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * word coverage

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?|[-+]{1,2}[\w-]+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further get got had has have having he her here hers him his how i if in into is
    it its itself just me more most my no nor not now of off on once only or other our ours
    out over own same she should so some such than that the their them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself please tell know want need
    way ways use using used there's what's i'm can't don't does doesn't""".split()  # noqa: SIM905 (a list of 140 words reads better as prose)
)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a retrieved passage (``passage``: its index in the list given)."""

    passage: int
    position: int  # its order within the passage
    text: str


@dataclass(frozen=True)
class Supported:
    sentence: Sentence
    score: float  # DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * coverage
    cosine: float
    coverage: float


@dataclass(frozen=True)
class PassageView:
    """What grounding needs of a retrieved passage (``sentence_vectors``: what training
    stored of its sentences, ``knowledge.sentences.pack``; None if nothing)."""

    heading: str
    text: str
    sentence_vectors: bytes | None = None


def normalise(text: str) -> str:
    """Lower case, typographic quotes and dashes made plain, digit groups joined, one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.translate(str.maketrans("‘’“”–—\u00a0\u2009\u202f", "''\"\"--   "))
    text = re.sub(r"(?<=\d)[,.\u2009 ](?=\d{3}\b)", "", text)
    return re.sub(r"\s+", " ", text).strip()


def stem(word: str) -> str:
    """A light suffix strip, enough that "renews", "renewal" and "renewed" meet."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ed", "es", "al", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    return {stem(w) for w in _WORD.findall(normalise(text)) if w not in STOPWORDS and len(w) > 1}


def sentences(passages: Sequence[PassageView]) -> list[Sentence]:
    """Each passage's sentences (``knowledge.sentences.split``: list items and paragraphs
    split at sentence ends, a term joined to the paragraph it names, headings and
    fragments left out). A Markdown file's inline markup was removed when it was read
    (``knowledge.formats.markdown``)."""
    return [
        Sentence(index, position, text)
        for index, passage in enumerate(passages)
        for position, text in enumerate(split_sentences(passage.text))
    ]


def sentence_vectors(
    passages: Sequence[PassageView], found: Sequence[Sentence], embed: Embed
) -> npt.NDArray[np.float32]:
    """The vectors of ``found`` (``sentences(passages)``), one row each: those training
    stored with each passage where they are still its sentences', the rest embedded now."""
    texts: dict[int, list[str]] = {}
    for sentence in found:
        texts.setdefault(sentence.passage, []).append(sentence.text)
    stored = {
        index: vectors
        for index, own in texts.items()
        if (vectors := unpack(passages[index].sentence_vectors, own)) is not None
    }
    missing = [s.text for s in found if s.passage not in stored]
    fresh = iter(embed(missing)) if missing else iter(())
    rows = [stored[s.passage][s.position] if s.passage in stored else next(fresh) for s in found]
    if not rows:
        return np.empty((0, 0), np.float32)
    return np.stack(rows).astype(np.float32, copy=False)


def support(
    question: str,
    question_vector: npt.NDArray[np.float32],
    passages: Sequence[PassageView],
    found: Sequence[Sentence],
    vectors: npt.NDArray[np.float32],
) -> list[Supported]:
    """Every sentence's support for the question, best first (ties: earlier passage first).

    The cosine is the question's with the sentence, or with the sentence read with its
    neighbours if that is nearer: "It renews on the 1st." answers a question about
    tokens only with the sentence before it.

    Coverage weighs each content word of the question by its rarity among the
    sentences (inverse document frequency): the word that names the subject
    ("nonlocal", "--human-readable") counts more than "file". A word of the
    question no sentence contains weighs most and lowers every sentence's
    coverage: the documents probably do not speak of it.
    """
    if not found:
        return []
    wanted = content_words(question)
    headings = [content_words(p.heading) for p in passages]
    words = [content_words(s.text) | headings[s.passage] for s in found]
    weight = {
        term: math.log(1 + len(found) / (0.5 + sum(term in w for w in words))) for term in wanted
    }
    total = sum(weight.values())
    question_vector = np.asarray(question_vector, dtype=np.float32)
    cosines = np.maximum(vectors @ question_vector, _in_context(found, vectors) @ question_vector)
    scored = []
    for sentence, terms, cosine in zip(found, words, cosines, strict=True):
        coverage = sum(weight[t] for t in wanted & terms) / total if total else 0.0
        score = DENSE_WEIGHT * float(cosine) + (1 - DENSE_WEIGHT) * coverage
        scored.append(Supported(sentence, score, float(cosine), coverage))
    scored.sort(key=lambda s: (-s.score, s.sentence.passage, s.sentence.position))
    return scored


def _in_context(
    found: Sequence[Sentence], vectors: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Each sentence's vector summed with its neighbours' in the passage, made unit length:
    the sentence in context, at the cost of three additions rather than a model call."""
    row = {(s.passage, s.position): i for i, s in enumerate(found)}
    summed = vectors.copy()
    for i, s in enumerate(found):
        for step in (-1, 1):
            neighbour = row.get((s.passage, s.position + step))
            if neighbour is not None:
                summed[i] += vectors[neighbour]
    lengths = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.asarray(summed / np.maximum(lengths, 1e-12), dtype=np.float32)


def confidence(scored: Sequence[Supported], passage_cosine: float) -> float:
    """How sure the passages answer the question: their best sentence's support, and the
    cosine of the question with the nearest passage as a whole (its stored vector).

    Neither alone separates answerable questions from the rest as well: a sentence can
    share the question's words by chance, and a passage can be on the subject without
    saying anything of the point asked.
    """
    best = scored[0].score if scored else 0.0
    return SUPPORT_WEIGHT * best + (1 - SUPPORT_WEIGHT) * passage_cosine


def compose(
    scored: Sequence[Supported],
    *,
    most: int = MAX_SENTENCES,
    fits: Callable[[str], bool] = lambda text: True,
) -> str:
    """The answer made of the best-supported sentences, quoted as the documents wrote them
    ("" when there is none, or not even the best sentence's first words fit).

    The ``most`` best sentences are quoted, then the sentences right after each, then
    the ones right before (the detail is often in the one after, the subject of "This
    method is called…" in the one before), each only while the answer still fits
    (``fits``: the response cap). They are shown in the documents' order, grouped by
    passage, the passage of the best sentence first, each group labelled with its
    passage's number (1-based, as the sources are shown). When not even the best
    sentence fits, its first words are quoted, ending with "…".
    """
    if not scored:
        return ""
    chosen = [s.sentence for s in scored[:most]]
    by_place = {(s.sentence.passage, s.sentence.position): s.sentence for s in scored}
    neighbours = [
        by_place[(s.passage, s.position + step)]
        for step in (1, -1)
        for s in chosen
        if (s.passage, s.position + step) in by_place
    ]
    passage_order = list(dict.fromkeys(s.passage for s in chosen))
    kept: list[Sentence] = []
    for sentence in dict.fromkeys(chosen + neighbours):
        if fits(_render([*kept, sentence], passage_order)):
            kept.append(sentence)
    if kept:
        return _render(kept, passage_order)
    top = scored[0].sentence  # not even the best sentence fits the response cap: its first words
    words = top.text.split()
    while words and not fits(_quote(top.passage, [" ".join(words) + "…"])):
        words.pop()
    return _quote(top.passage, [" ".join(words) + "…"]) if words else ""


def _render(kept: Sequence[Sentence], passage_order: Sequence[int]) -> str:
    """``kept`` in the documents' order, grouped by passage in ``passage_order``."""
    groups: dict[int, list[str]] = {p: [] for p in passage_order}
    for sentence in sorted(kept, key=lambda s: (passage_order.index(s.passage), s.position)):
        groups[sentence.passage].append(sentence.text)
    return "\n\n".join(_quote(passage, texts) for passage, texts in groups.items() if texts)


def _quote(passage: int, texts: Sequence[str]) -> str:
    return " ".join(_sentence_end(t) for t in texts) + f" [{passage + 1}]"


def _sentence_end(text: str) -> str:
    return text if text[-1] in ".!?:;…" else text + "."


# --- checking a generated answer -------------------------------------------------------


class SentenceChecker:
    """Keeps a generated sentence only if the passages support it.

    Supported: its embedding's cosine to the closest passage sentence is at
    least ``threshold``, and every number it states appears in the passages.
    """

    def __init__(
        self,
        embed: Embed,
        passages: Sequence[PassageView],
        *,
        threshold: float = CHECK_THRESHOLD,
    ) -> None:
        self._embed = embed
        self._threshold = threshold
        found = sentences(passages)
        self._vectors = sentence_vectors(passages, found, embed) if found else None
        corpus = normalise(" ".join(p.heading + " " + p.text for p in passages))
        self._numbers = set(_NUMBER.findall(corpus))

    def supported(self, sentence: str) -> bool:
        if self._vectors is None:
            return False
        numbers = set(_NUMBER.findall(normalise(sentence)))
        if not numbers <= self._numbers:
            return False
        vector = self._embed([sentence])[0]
        return float(np.max(self._vectors @ vector)) >= self._threshold


def split_generated(text: str) -> tuple[list[str], str]:
    """Complete sentences of a generated text so far, and the unfinished rest."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    if not parts:
        return [], ""
    done, rest = parts[:-1], parts[-1]
    return [p for p in done if p.strip()], rest
