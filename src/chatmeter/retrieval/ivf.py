"""An inverted-file index (IVF) over one assistant's vectors: approximate, checked, optional.

Exact search reads every vector of an assistant for every question: 150 MB at
100,000 passages, about 8 ms of memory traffic on this machine. The index
groups the vectors around ``√n`` centroids (spherical k-means on a sample)
and a question reads only the groups whose centroids are nearest to it.

How many groups to read is measured, not guessed: at build time pseudo-
questions (passages pushed well off their place by random noise, so they are
harder than real ones) are searched both ways, and the index reads twice the
number of groups that finds 99 % of their exact 30 nearest neighbours. Text
embeddings cluster by topic, so a few groups are usually enough; when the
vectors have no such structure (random ones do not), no small number of groups
is enough and ``build`` returns None: exact search stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

TARGET_RECALL = 0.99  # of the calibration questions' exact neighbours
CALIBRATION_QUESTIONS = 256
CALIBRATION_NEIGHBOURS = 30  # retrieval asks for this many candidates
CALIBRATION_NOISE = 1.0  # the noise's length; a pseudo-question is ~45° off its passage
SAFETY = 2  # read this many times the groups that the calibration needed
MIN_PROBES = 8
MAX_PROBED_SHARE = 0.25  # reading more than this of the vectors is not worth an index
KMEANS_ITERATIONS = 10
KMEANS_SAMPLE_PER_LIST = 64
BLOCK = 16_384  # rows per matrix product while assigning, to bound memory


@dataclass(frozen=True)
class Index:
    """Centroids and, for each, the slice of (reordered) rows assigned to it."""

    centroids: npt.NDArray[np.float32]  # (lists, dimensions), unit rows
    offsets: npt.NDArray[np.int64]  # rows of list i are offsets[i]:offsets[i + 1]
    probes: int
    recall: float  # measured on the calibration questions at ``probes``

    def candidates(
        self, vectors: npt.NDArray[np.float32], query: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Rows of the probed lists and their scores (``vectors`` in index order)."""
        closeness = np.vecdot(self.centroids, query)
        lists = np.argpartition(-closeness, self.probes - 1)[: self.probes]
        rows = [np.arange(self.offsets[i], self.offsets[i + 1]) for i in lists]
        scores = [np.vecdot(vectors[self.offsets[i] : self.offsets[i + 1]], query) for i in lists]
        return np.concatenate(rows), np.concatenate(scores)


def build(
    vectors: npt.NDArray[np.float32], *, seed: int = 0
) -> tuple[Index, npt.NDArray[np.int64]] | None:
    """An index and the row order it needs (group by group), or None if it would not pay.

    ``vectors`` are unit rows. The caller reorders its matrix and ids with the
    returned order, so that each list is one contiguous slice.
    """
    rng = np.random.default_rng(seed)
    count = len(vectors)
    lists = max(1, round(np.sqrt(count)))
    centroids = _kmeans(vectors, lists, rng)
    assigned = _assign(vectors, centroids)
    needed, recall_at = _calibrate(vectors, centroids, assigned, rng)
    probes = max(MIN_PROBES, SAFETY * needed)
    if probes > MAX_PROBED_SHARE * lists:
        return None
    order = np.argsort(assigned, kind="stable")
    sizes = np.bincount(assigned, minlength=lists)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    index = Index(centroids, offsets, probes, float(recall_at[probes - 1]))
    return index, order


def _unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def _kmeans(
    vectors: npt.NDArray[np.float32], lists: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Spherical k-means (cosine) on a sample of the rows."""
    size = min(len(vectors), lists * KMEANS_SAMPLE_PER_LIST)
    sample = vectors[rng.choice(len(vectors), size, replace=False)]
    centroids = sample[rng.choice(len(sample), lists, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        nearest = np.argmax(sample @ centroids.T, axis=1)
        sizes = np.bincount(nearest, minlength=lists)
        order = np.argsort(nearest, kind="stable")
        used = np.flatnonzero(sizes)
        starts = np.concatenate([[0], np.cumsum(sizes[used])[:-1]])
        sums = centroids.copy()
        sums[used] = np.add.reduceat(sample[order], starts, axis=0)
        empty = np.flatnonzero(sizes == 0)
        if empty.size:  # an empty list restarts from a random row
            sums[empty] = sample[rng.choice(len(sample), empty.size, replace=False)]
        centroids = _unit(sums)
    return centroids


def _assign(
    vectors: npt.NDArray[np.float32], centroids: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    return np.concatenate(
        [
            np.argmax(vectors[start : start + BLOCK] @ centroids.T, axis=1)
            for start in range(0, len(vectors), BLOCK)
        ]
    ).astype(np.int64)


def _calibrate(
    vectors: npt.NDArray[np.float32],
    centroids: npt.NDArray[np.float32],
    assigned: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> tuple[int, npt.NDArray[np.float64]]:
    """The fewest lists that hold ``TARGET_RECALL`` of the pseudo-questions' neighbours.

    Also the recall for every number of lists (index ``p - 1`` for ``p`` lists).
    The recall of probing ``p`` lists is the share of exact neighbours whose
    list is among the question's ``p`` nearest centroids, so one exact search
    per question answers for every ``p`` at once.
    """
    count, dimensions = vectors.shape
    sources = rng.choice(count, min(count, CALIBRATION_QUESTIONS), replace=False)
    noise = rng.standard_normal((len(sources), dimensions)).astype(np.float32)
    questions = _unit(vectors[sources] + CALIBRATION_NOISE * noise / np.sqrt(dimensions))
    k = min(CALIBRATION_NEIGHBOURS, count - 1)
    neighbours = np.concatenate(
        [
            np.argpartition(-(questions[start : start + 64] @ vectors.T), k, axis=1)[:, :k]
            for start in range(0, len(questions), 64)
        ]
    )
    lists = len(centroids)
    by_closeness = np.argsort(-(questions @ centroids.T), axis=1)
    rank = np.empty_like(by_closeness)
    rank[np.arange(len(questions))[:, None], by_closeness] = np.arange(lists)[None, :]
    ranks = rank[np.arange(len(questions))[:, None], assigned[neighbours]].ravel()
    recall_at = np.cumsum(np.bincount(ranks, minlength=lists)) / ranks.size
    needed = int(np.argmax(recall_at >= TARGET_RECALL)) + 1
    return needed, recall_at
