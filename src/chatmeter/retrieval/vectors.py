"""Dense search: each process keeps an assistant's vectors in memory as one matrix.

The vectors live in the database; the matrix is only a cache. It is keyed by
the assistant's ``index_version``, which every change to its files bumps in
the same transaction, so a process notices a stale matrix on its next search
whichever process made the change.

Up to ``APPROXIMATE_ABOVE`` passages a search reads every vector (exact; under
a millisecond at 10,000). Above it, a matrix also gets an IVF index
(``ivf.py``), built once per version in a background thread: until it is
ready, and for vectors on which it would lose recall, search stays exact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.retrieval import ivf
from chatmeter.training.models import Chunk

log = logging.getLogger("chatmeter.retrieval")

APPROXIMATE_ABOVE = 20_000


@dataclass(frozen=True)
class _Matrix:
    version: int
    ids: np.ndarray  # int64, one per row
    vectors: np.ndarray  # float32 (rows, dimensions), L2-normalised
    index: ivf.Index | None = None  # rows are then in the index's order


_EMPTY = _Matrix(-1, np.empty(0, np.int64), np.empty((0, 0), np.float32))


def index_version(session: Session, assistant_id: int) -> int | None:
    """The assistant's index version (None: no such assistant): what every cached view of
    its passages is checked against."""
    return session.scalar(select(Assistant.index_version).where(Assistant.id == assistant_id))


class VectorCache:
    def __init__(
        self,
        *,
        max_assistants: int = 256,
        approximate_above: int = APPROXIMATE_ABOVE,
        background: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._matrices: dict[int, _Matrix] = {}
        self._max = max_assistants
        self._approximate_above = approximate_above
        self._background = background
        self._building: set[tuple[int, int]] = set()

    def search(
        self,
        session: Session,
        *,
        assistant_id: int,
        query: np.ndarray,
        limit: int,
        version: int | None = None,
    ) -> list[int]:
        """Chunk ids nearest to ``query`` (cosine), best first. ``version``: the assistant's
        index version, when the caller read it already (None: read here)."""
        matrix = self._matrix(session, assistant_id, version)
        if matrix.ids.size == 0:
            return []
        query = np.ascontiguousarray(query, dtype=np.float32).ravel()
        probed = matrix.index.candidates(matrix.vectors, query) if matrix.index else None
        if probed is not None and probed[0].size >= limit:
            rows, scores = probed
        else:  # exact, also when the probed lists hold too few rows
            # vecdot, not matmul: BLAS would split one product over threads that,
            # on a busy machine, wait for a core (p99 12 ms instead of 2 at 10,000).
            scores = np.vecdot(matrix.vectors, query)
            rows = np.arange(scores.size)
        if limit < scores.size:
            best = np.argpartition(-scores, limit)[:limit]
            rows, scores = rows[best], scores[best]
        ids = matrix.ids[rows]
        order = np.lexsort((ids, -scores))  # equal scores (duplicate passages): lower id first
        return [int(i) for i in ids[order]]

    def similarities(
        self,
        session: Session,
        *,
        assistant_id: int,
        chunk_ids: Sequence[int],
        query: np.ndarray,
        version: int | None = None,
    ) -> list[float]:
        """The cosine of ``query`` with each of the assistant's ``chunk_ids``, in their order
        (0.0 for an id it does not have: deleted since, or another assistant's)."""
        matrix = self._matrix(session, assistant_id, version)
        query = np.ascontiguousarray(query, dtype=np.float32).ravel()
        rows = np.flatnonzero(np.isin(matrix.ids, chunk_ids))  # one pass over the ids
        if rows.size == 0:
            return [0.0] * len(chunk_ids)
        cosines = np.vecdot(matrix.vectors[rows], query).tolist()
        by_id = dict(zip(matrix.ids[rows].tolist(), cosines, strict=True))
        return [by_id.get(chunk_id, 0.0) for chunk_id in chunk_ids]

    def index(self, assistant_id: int) -> ivf.Index | None:
        """The IVF index serving the assistant's searches now, if any."""
        with self._lock:
            cached = self._matrices.get(assistant_id)
        return cached.index if cached is not None else None

    def _matrix(self, session: Session, assistant_id: int, version: int | None) -> _Matrix:
        if version is None:
            version = index_version(session, assistant_id)
        if version is None:
            return _EMPTY
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
            np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            .reshape(len(rows), -1)
            .astype(np.float32)  # native order, writable, its own copy
            if rows
            else np.empty((0, 0), np.float32)
        )
        fresh = _Matrix(version, ids, vectors)
        with self._lock:
            if len(self._matrices) >= self._max and assistant_id not in self._matrices:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[assistant_id] = fresh
        if len(rows) > self._approximate_above:
            self._index(assistant_id, fresh)
        return fresh

    def _index(self, assistant_id: int, matrix: _Matrix) -> None:
        key = (assistant_id, matrix.version)
        with self._lock:
            if key in self._building:
                return
            self._building.add(key)
        if self._background:
            threading.Thread(
                target=self._build, args=(assistant_id, matrix), name="ivf-build", daemon=True
            ).start()
        else:
            self._build(assistant_id, matrix)

    def _build(self, assistant_id: int, matrix: _Matrix) -> None:
        try:
            built = ivf.build(matrix.vectors)
            if built is None:
                log.info("assistant %s: vectors without clusters, search stays exact", assistant_id)
                return
            index, order = built
            indexed = replace(
                matrix, ids=matrix.ids[order], vectors=matrix.vectors[order], index=index
            )
            with self._lock:
                # Only if nothing newer came meanwhile.
                if self._matrices.get(assistant_id) is matrix:
                    self._matrices[assistant_id] = indexed
            log.info(
                "assistant %s: IVF index, %d lists, %d probed, calibrated recall %.3f",
                assistant_id,
                len(index.centroids),
                index.probes,
                index.recall,
            )
        except Exception:  # the exact matrix keeps serving
            log.exception("assistant %s: building the IVF index failed", assistant_id)
        finally:
            with self._lock:
                self._building.discard((assistant_id, matrix.version))
