"""Hybrid retrieval: keyword and dense rankings fused by reciprocal rank, cut to a budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.knowledge.embeddings import Embedder
from chatmeter.retrieval import keyword
from chatmeter.retrieval.vectors import VectorCache, index_version
from chatmeter.training.models import Chunk, TrainingFile
from chatmeter.training.titles import shown_title

RRF_K = 60  # the constant of Cormack et al.; dampens the weight of the very top ranks
CANDIDATES = 30
PASSAGE_EXCERPT_CHARS = 280  # what the widget shows of a passage, when the customer allows it
CORRECTED_ANSWER = "Corrected answer"  # the name a correction goes by as a source


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    file_id: int
    filename: str
    page: int
    heading: str
    text: str
    tokens: int
    score: float
    correction_id: int | None = None  # set when the source is the customer's correction
    title: str = ""  # what visitors see as the source (``training.titles.shown_title``)
    similarity: float = 0.0  # the question's cosine with the passage's stored vector
    # Its sentences' vectors as training stored them (``knowledge.sentences.pack``), for
    # grounding; None for a correction, or a passage trained before they were stored.
    sentence_vectors: bytes | None = field(default=None, repr=False, compare=False)

    def source(self) -> dict[str, object]:
        """The whole source, as the customer's own conversation pages show it."""
        source: dict[str, object] = {
            "file_id": self.file_id,
            "filename": self.filename,
            "title": self.title or self.filename,
            "page": self.page,
            "heading": self.heading,
            "passage": self.text,
        }
        if self.correction_id is not None:
            source["correction_id"] = self.correction_id
        return source

    def shown(self, show: str) -> dict[str, object]:
        """What a visitor may see of this source: ``names`` (the document's title, heading
        and page) or ``passages`` (also an excerpt). Never our ids, the file's name (the
        customer's own, often internal) or the whole passage."""
        shown: dict[str, object] = {
            "title": self.title or self.filename,
            # Pages mean something in a PDF only; every other file is "page 1".
            "page": self.page if self.filename.lower().endswith(".pdf") else None,
            "heading": "" if self.correction_id is not None else self.heading,
        }
        if show == "passages":
            shown["passage"] = self.text[:PASSAGE_EXCERPT_CHARS]
        return shown


def fuse(rankings: Sequence[Sequence[int]], *, k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: sum of 1/(k + rank) over the rankings, best first."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def retrieve(
    session: Session,
    *,
    assistant_id: int,
    question: str,
    embedder: Embedder,
    vectors: VectorCache,
    passages: int,
    budget: int,
    count_tokens: Callable[[str], int] | None = None,
    query: npt.NDArray[np.float32] | Callable[[], npt.NDArray[np.float32]] | None = None,
    version: int | None = None,
) -> list[Passage]:
    """The best passages for ``question``: at most ``passages``, together within ``budget`` tokens.

    ``count_tokens`` is the generating model's tokenizer, so the budget holds in
    the prompt; without it the embedding tokenizer's count stored with each chunk is used.
    ``query``: the question's embedding, when the caller has it already, or a function
    that waits for it (called after the keyword search, which can run meanwhile).
    ``version``: the assistant's index version, when the caller read its row in this
    session already (read here otherwise: one round trip).
    """
    if version is None:
        version = index_version(session, assistant_id)  # read once, for both searches
    if version is None:
        return []
    sparse = keyword.search(
        session, assistant_id=assistant_id, question=question, limit=CANDIDATES, version=version
    )
    if query is None:
        vector = embedder.embed([question])[0]
    elif isinstance(query, np.ndarray):
        vector = query
    else:
        vector = query()
    dense = vectors.search(
        session, assistant_id=assistant_id, query=vector, limit=CANDIDATES, version=version
    )
    ranked = fuse([dense, sparse])
    if not ranked:
        return []
    wanted = [chunk_id for chunk_id, _ in ranked[: passages * 3]]
    # Columns, not Chunk objects: an object would also load its 1.5 KB vector.
    rows = {
        row.id: row
        for row in session.execute(
            select(
                Chunk.id,
                Chunk.file_id,
                TrainingFile.filename,
                TrainingFile.title,
                TrainingFile.detected_title,
                Chunk.page,
                Chunk.heading,
                Chunk.text,
                Chunk.tokens,
                Chunk.sentence_vectors,
            )
            .join(TrainingFile, TrainingFile.id == Chunk.file_id)
            # The searches were by assistant already; asking again costs nothing and means
            # no stale cache or id mix-up can ever put another assistant's text in a prompt.
            .where(Chunk.id.in_(wanted), Chunk.assistant_id == assistant_id)
        )
    }
    picked: list[tuple[Any, float, int]] = []  # (row, fused score, tokens)
    spent = 0
    for chunk_id, score in ranked:
        if len(picked) == passages:
            break
        row = rows.get(chunk_id)
        if row is None:
            continue  # not among the wanted, or deleted since the search
        cost = count_tokens(row.text) if count_tokens else row.tokens
        if spent + cost > budget:
            continue  # a smaller passage further down may still fit
        spent += cost
        picked.append((row, score, cost))
    similarities = vectors.similarities(
        session,
        assistant_id=assistant_id,
        chunk_ids=[row.id for row, _, _ in picked],
        query=vector,
        version=version,
    )
    return [
        Passage(
            row.id,
            row.file_id,
            row.filename,
            row.page,
            row.heading,
            row.text,
            cost,
            score,
            title=shown_title(row.title, row.detected_title, row.filename),
            similarity=similarity,
            sentence_vectors=row.sentence_vectors,
        )
        for (row, score, cost), similarity in zip(picked, similarities, strict=True)
    ]
