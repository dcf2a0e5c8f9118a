"""What the passages support: sentences, their support for a question, grounded answers.

Pure: the embedding model comes in as a function (``Embed``), so every rule
here is tested without a model, and the thresholds are the ones
``bench/answers.py`` chose on the evaluation set's dev half.

Three uses, one scale:

- ``support`` scores each sentence of the retrieved passages against the
  question: the cosine of their embeddings and the share of the question's
  content words the sentence (or its passage's heading) contains.
- ``compose`` builds an answer of the best-supported sentences, quoted as the
  documents wrote them, each group followed by its source's label ("[1]"); or
  nothing, when no sentence is supported enough (the assistant then says it
  does not know).
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

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]

# Tuned on the dev half of bench/answers (see docs/benchmarks.md, "Answers").
ANSWER_THRESHOLD = 0.35  # the best sentence's support below this: abstain
KEEP_WITHIN = 0.1  # further sentences kept when their support is this close to the best
MAX_SENTENCES = 3  # best-supported sentences quoted, each with its two neighbours
CHECK_THRESHOLD = 0.72  # a generated sentence's cosine to its closest passage sentence
DENSE_WEIGHT = 0.4  # support = DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * word coverage

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?|[-+]{1,2}[\w-]+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[`*]?[A-Z0-9])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_MARKUP = re.compile(r"\*\*|__|`")
MIN_SENTENCE_CHARS = 12
MAX_SENTENCE_CHARS = 600

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
    """What grounding needs of a retrieved passage."""

    heading: str
    text: str


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
    """Each passage's sentences: list items and paragraphs split at sentence ends; wrapped
    lines joined; headings, bare markup and fragments left out."""
    found: list[Sentence] = []
    for index, passage in enumerate(passages):
        position = 0
        for unit in _units(passage.text):
            for piece in _SENTENCE_END.split(unit):
                text = _MARKUP.sub("", piece).strip()
                if len(text) < MIN_SENTENCE_CHARS or not re.search(r"[^\W\d_]{2}", text):
                    continue
                found.append(Sentence(index, position, text[:MAX_SENTENCE_CHARS]))
                position += 1
    return found


def _units(text: str) -> list[str]:
    """Paragraphs and list items, each on one line."""
    units: list[str] = []
    current: list[str] = []

    def close() -> None:
        if current:
            units.append(" ".join(current))
            current.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or _HEADING.match(line) or stripped.startswith("```"):
            close()
            continue
        if _LIST_ITEM.match(line):
            close()
            current.append(_LIST_ITEM.sub("", line).strip())
            continue
        current.append(stripped)
    close()
    return units


def support(
    question: str,
    question_vector: npt.NDArray[np.float32],
    passages: Sequence[PassageView],
    found: Sequence[Sentence],
    vectors: npt.NDArray[np.float32],
) -> list[Supported]:
    """Every sentence's support for the question, best first (ties: earlier passage first).

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
    cosines = vectors @ np.asarray(question_vector, dtype=np.float32)
    scored = []
    for sentence, terms, cosine in zip(found, words, cosines, strict=True):
        coverage = sum(weight[t] for t in wanted & terms) / total if total else 0.0
        score = DENSE_WEIGHT * float(cosine) + (1 - DENSE_WEIGHT) * coverage
        scored.append(Supported(sentence, score, float(cosine), coverage))
    scored.sort(key=lambda s: (-s.score, s.sentence.passage, s.sentence.position))
    return scored


@dataclass(frozen=True)
class Composed:
    text: str  # "" when nothing was supported enough
    passages: tuple[int, ...]  # the passages it quotes, in the order quoted
    best: float  # the best sentence's support


def compose(
    scored: Sequence[Supported],
    *,
    threshold: float = ANSWER_THRESHOLD,
    within: float = KEEP_WITHIN,
    most: int = MAX_SENTENCES,
    fits: Callable[[str], bool] = lambda text: True,
) -> Composed:
    """The answer made of the best-supported sentences, or ``Composed("")``.

    Kept: the best sentence, and up to ``most`` - 1 more whose support is within
    ``within`` of it, each with the sentences right before and after it (the
    subject of "This method is called…" is in the one before, the detail often in
    the one after). They are quoted in the documents' order, grouped by passage,
    each group labelled with its passage's number (1-based, as the sources are
    shown). ``fits`` tells whether an answer still fits the response cap; a
    neighbour or a further sentence that would not fit is left out, and when not
    even the best sentence fits, its first words are quoted, ending with "…".
    """
    if not scored or scored[0].score < threshold:
        return Composed("", (), scored[0].score if scored else 0.0)
    best = scored[0].score
    chosen = [scored[0].sentence]
    for candidate in scored[1:]:
        if len(chosen) >= most or candidate.score < max(threshold, best - within):
            break
        chosen.append(candidate.sentence)
    by_place = {(c.sentence.passage, c.sentence.position): c.sentence for c in scored}
    neighbours = [
        by_place[(s.passage, s.position + step)]
        for s in chosen
        for step in (-1, 1)
        if (s.passage, s.position + step) in by_place
    ]
    quoted = list(dict.fromkeys(chosen + neighbours))
    passage_order = list(dict.fromkeys(s.passage for s in chosen))
    groups: dict[int, list[str]] = {}
    for sentence in sorted(quoted, key=lambda s: (passage_order.index(s.passage), s.position)):
        trial = {**groups, sentence.passage: [*groups.get(sentence.passage, []), sentence.text]}
        if fits(_render(trial)):
            groups = trial
    if not groups:  # not even the best sentence fits the response cap: its first words do
        top = scored[0].sentence
        words = top.text.split()
        while words and not fits(_render({top.passage: [" ".join(words) + "…"]})):
            words.pop()
        if not words:
            return Composed("", (), best)
        groups = {top.passage: [" ".join(words) + "…"]}
    return Composed(_render(groups), tuple(groups), best)


def _render(groups: dict[int, list[str]]) -> str:
    return "\n\n".join(
        " ".join(_sentence_end(t) for t in texts) + f" [{passage + 1}]"
        for passage, texts in groups.items()
    )


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
        self._vectors = embed([s.text for s in found]) if found else None
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
