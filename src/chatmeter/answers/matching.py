"""Finding the customer's correction for a question: the nearest corrected question."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.answers.models import Correction

# Cosine of the two questions' embeddings (all-MiniLM-L6-v2) from which a correction
# answers a question: paraphrases of one question score 0.8-0.95, different questions
# on the same subject 0.4-0.7 (tests/answers/test_matching.py holds examples).
MATCH_THRESHOLD = 0.8
MAX_CORRECTIONS = 500  # per assistant; ``corrections.add`` refuses more


@dataclass(frozen=True)
class Match:
    correction_id: int
    question: str
    answer: str
    similarity: float


def encode(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def best_correction(
    session: Session,
    *,
    assistant_id: int,
    question_vector: npt.NDArray[np.float32],
    threshold: float = MATCH_THRESHOLD,
) -> Match | None:
    """The assistant's correction whose question is nearest ``question_vector``, if near
    enough (newest first among equals)."""
    rows = session.execute(
        select(Correction.id, Correction.embedding)
        .where(Correction.assistant_id == assistant_id)
        .order_by(Correction.id.desc())
        .limit(MAX_CORRECTIONS)
    ).all()
    if not rows:
        return None
    vectors = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4").reshape(len(rows), -1)
    query = np.asarray(question_vector, dtype=np.float32).ravel()
    if vectors.shape[1] != query.size:
        return None  # stored by another embedding model: never compared
    scores = vectors @ query
    best = int(np.argmax(scores))  # the first of equals: the newest
    if float(scores[best]) < threshold:
        return None
    found = session.get(Correction, rows[best].id)
    assert found is not None
    return Match(found.id, found.question, found.answer, float(scores[best]))
