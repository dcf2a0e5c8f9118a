"""The IVF index for large assistants: recall against exact search, and a cache that stays right."""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import insert, update

from chatmeter.assistants.models import Assistant
from chatmeter.context import Context
from chatmeter.retrieval import ivf
from chatmeter.retrieval.vectors import VectorCache
from chatmeter.training.models import Chunk
from tests.retrieval.test_search_parts import make_assistant

DIMENSIONS = 384


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def topics(rng: np.random.Generator, count: int) -> np.ndarray:
    return unit_rows(rng.standard_normal((count, DIMENSIONS)))


def around(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    """Points of a topic mixture, as text embeddings cluster by subject (cosine ~0.55 to it)."""
    chosen = centres[rng.integers(0, len(centres), count)]
    return unit_rows(chosen + 1.5 * rng.standard_normal((count, DIMENSIONS)) / np.sqrt(DIMENSIONS))


def exact_top(vectors: np.ndarray, question: np.ndarray, k: int) -> set[int]:
    return {int(i) for i in np.argsort(-(vectors @ question), kind="stable")[:k]}


def test_the_index_finds_what_exact_search_finds() -> None:
    rng = np.random.default_rng(1)
    centres = topics(rng, 80)
    vectors = around(rng, centres, 20_000)
    built = ivf.build(vectors)
    assert built is not None
    index, order = built
    reordered = vectors[order]
    assert index.probes <= ivf.MAX_PROBED_SHARE * len(index.centroids)

    found = 0
    questions = around(rng, centres, 200)  # new points, not the passages themselves
    for question in questions:
        rows, scores = index.candidates(reordered, question)
        best = order[rows[np.argsort(-scores)[:10]]]
        found += len({int(i) for i in best} & exact_top(vectors, question, 10))
    assert found / (10 * len(questions)) >= 0.95


def test_vectors_without_clusters_keep_exact_search() -> None:
    vectors = unit_rows(np.random.default_rng(2).standard_normal((5_000, DIMENSIONS)))
    assert ivf.build(vectors) is None  # no few lists would hold the neighbours


def add_chunks(ctx: Context, assistant_id: int, file_id: int, vectors: np.ndarray) -> None:
    """What training does in another process: new chunks, and the version bumped with them."""
    with ctx.db.uow() as uow:
        uow.session.execute(
            insert(Chunk),
            [
                {
                    "assistant_id": assistant_id,
                    "file_id": file_id,
                    "ordinal": i,
                    "page": 1,
                    "heading": "",
                    "text": f"passage {i}",
                    "tokens": 2,
                    "embedding": vector.astype("<f4").tobytes(),
                }
                for i, vector in enumerate(vectors)
            ],
        )
        uow.session.execute(
            update(Assistant)
            .where(Assistant.id == assistant_id)
            .values(index_version=Assistant.index_version + 1)
        )
        uow.commit()


def test_an_indexed_cache_follows_changes_made_by_another_process(ctx: Context) -> None:
    rng = np.random.default_rng(3)
    centres = topics(rng, 40)
    assistant_id, ids = make_assistant(ctx, ["seed"], around(rng, centres, 1))
    with ctx.db.read() as session:
        file_id = session.get(Chunk, ids[0]).file_id
    add_chunks(ctx, assistant_id, file_id, around(rng, centres, 3_000))
    here = VectorCache(approximate_above=1_000, background=False)
    exact = VectorCache(approximate_above=10**9)
    question = around(rng, centres, 1)[0]

    with ctx.db.read() as session:
        first = here.search(session, assistant_id=assistant_id, query=question, limit=10)
        want = exact.search(session, assistant_id=assistant_id, query=question, limit=10)
    assert here.index(assistant_id) is not None
    assert len(set(first) & set(want)) >= 9

    # Another process adds the passage that answers best; this one notices at once.
    add_chunks(ctx, assistant_id, file_id, question[None, :])
    with ctx.db.read() as session:
        after = here.search(session, assistant_id=assistant_id, query=question, limit=10)
        newest = max(exact.search(session, assistant_id=assistant_id, query=question, limit=3_100))
    assert after[0] == newest
    assert here.index(assistant_id) is not None  # rebuilt for the new version


def test_search_stays_exact_until_the_background_index_is_ready(ctx: Context) -> None:
    rng = np.random.default_rng(4)
    centres = topics(rng, 40)
    vectors = around(rng, centres, 2_500)
    assistant_id, _ = make_assistant(ctx, [str(i) for i in range(len(vectors))], vectors)
    cache = VectorCache(approximate_above=1_000)  # builds in a thread
    exact = VectorCache(approximate_above=10**9)
    question = around(rng, centres, 1)[0]
    with ctx.db.read() as session:
        want = exact.search(session, assistant_id=assistant_id, query=question, limit=5)
        # The first search loads the matrix and answers from it whether or not
        # the index is ready yet.
        assert cache.search(session, assistant_id=assistant_id, query=question, limit=5) == want
    deadline = time.monotonic() + 60
    while cache.index(assistant_id) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.index(assistant_id) is not None
    with ctx.db.read() as session:
        found = cache.search(session, assistant_id=assistant_id, query=question, limit=5)
    assert len(set(found) & set(want)) >= 4
