"""Dense search: each process keeps an assistant's vectors in memory as one matrix.

The vectors live in the database; the matrix is only a cache. It is keyed by
the assistant's ``index_version``, which every change to its files bumps in
the same transaction, so a process notices a stale matrix on its next search
whichever process made the change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.training.models import Chunk


@dataclass(frozen=True)
class _Matrix:
    version: int
    ids: np.ndarray  # int64, one per row
    vectors: np.ndarray  # float32 (rows, dimensions), L2-normalised


class VectorCache:
    def __init__(self, *, max_assistants: int = 256) -> None:
        self._lock = threading.Lock()
        self._matrices: dict[int, _Matrix] = {}
        self._max = max_assistants

    def search(
        self, session: Session, *, assistant_id: int, query: np.ndarray, limit: int
    ) -> list[int]:
        """Chunk ids nearest to ``query`` (cosine), best first."""
        matrix = self._matrix(session, assistant_id)
        if matrix.ids.size == 0:
            return []
        scores = matrix.vectors @ query.astype(np.float32).ravel()
        if limit < scores.size:
            top = np.argpartition(-scores, limit)[:limit]
            top = top[np.argsort(-scores[top], kind="stable")]
        else:
            top = np.argsort(-scores, kind="stable")
        return [int(matrix.ids[i]) for i in top]

    def _matrix(self, session: Session, assistant_id: int) -> _Matrix:
        version = session.scalar(
            select(Assistant.index_version).where(Assistant.id == assistant_id)
        )
        if version is None:
            return _Matrix(-1, np.empty(0, np.int64), np.empty((0, 0), np.float32))
        with self._lock:
            cached = self._matrices.get(assistant_id)
        if cached is not None and cached.version == version:
            return cached
        rows = session.execute(
            select(Chunk.id, Chunk.embedding)
            .where(Chunk.assistant_id == assistant_id)
            .order_by(Chunk.id)
        ).all()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = (
            np.vstack([np.frombuffer(r[1], dtype="<f4") for r in rows])
            if rows
            else np.empty((0, 0), np.float32)
        )
        fresh = _Matrix(version, ids, np.ascontiguousarray(vectors, dtype=np.float32))
        with self._lock:
            if len(self._matrices) >= self._max and assistant_id not in self._matrices:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[assistant_id] = fresh
        return fresh
