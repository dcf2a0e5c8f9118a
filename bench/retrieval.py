"""Retrieval latency at 10,000 and 100,000 chunks, on SQLite and PostgreSQL.

    .venv/bin/python bench/retrieval.py [--postgres URL] [--queries N] [--sizes 10000,100000]
                                        [--vectors random,clustered]

An assistant is filled with synthetic passages: sentences drawn from a
5,000-word vocabulary with a Zipf-like frequency (so keyword search meets
common and rare words as in real text) and unit vectors of the embedding
model's 384 dimensions, either random (no structure at all: the worst case
for an approximate index, which then stays exact) or clustered by topic
(``--vectors clustered``: a mixture of topics of ~250 passages, as text
embeddings group by subject; questions are new points of the same topics).
Each query is a handful of vocabulary words and a vector of the same kind.

Measured per query, as the chat pipeline calls it: keyword search + vector
search + rank fusion + fetching the passages, with the in-memory vector
matrix warm (it is loaded, and indexed above 20,000 passages, once per
process and index version; the first query, which does that, is timed on its
own). "keyword alone" is keyword search by itself (p50/p99), on new questions:
with words this process has not met before (PostgreSQL counts each word's
passages once per index version and process), then the same questions again.
"dense recall@10" compares the vector search with an exact one over the same
questions (1.000 when it is exact). On PostgreSQL the table is vacuumed
after loading, as autovacuum does within a minute in production: it merges
the GIN index's pending list, without which the planner scans every row
(autovacuum is off on the test server). Embedding a question with the real
model is measured on its own, with a new question each time (a repeated
question is answered from a cache, also timed).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time

import numpy as np
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from chatmeter import models  # noqa: F401
from chatmeter.accounts import service as accounts
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.clock import SystemClock
from chatmeter.db import Database, normalise_url
from chatmeter.retrieval import keyword
from chatmeter.retrieval.search import CANDIDATES, retrieve
from chatmeter.retrieval.vectors import VectorCache
from chatmeter.training.models import Chunk, TrainingFile

DIMENSIONS = 384
VOCABULARY = [f"w{i}" for i in range(5000)]
WEIGHTS = np.array([1 / (i + 1) for i in range(len(VOCABULARY))])
WEIGHTS /= WEIGHTS.sum()


class FixedQueryEmbedder:
    """Hands retrieval a precomputed vector, so the figures isolate search from the model."""

    def __init__(self) -> None:
        self.next: np.ndarray | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        assert self.next is not None
        return self.next[None, :]


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


PASSAGES_PER_TOPIC = 250
SPREAD = 1.5  # a passage's offset from its topic; cosine to the topic ~0.55


class Vectors:
    """The vectors of passages and questions: random, or clustered around topics."""

    def __init__(self, rng: np.random.Generator, kind: str, size: int) -> None:
        self.kind = kind
        self._rng = rng
        self._topics = unit_vectors(rng, max(1, size // PASSAGES_PER_TOPIC))

    def make(self, n: int) -> np.ndarray:
        if self.kind == "random":
            return unit_vectors(self._rng, n)
        topics = self._topics[self._rng.integers(0, len(self._topics), n)]
        noise = self._rng.standard_normal((n, DIMENSIONS)).astype(np.float32)
        vectors = topics + SPREAD * noise / np.sqrt(DIMENSIONS)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(VOCABULARY[i] for i in rng.choice(len(VOCABULARY), words, p=WEIGHTS))


def fill(db: Database, size: int, rng: np.random.Generator, vectors: Vectors | None = None) -> int:
    vectors = vectors or Vectors(rng, "random", size)
    now = SystemClock().now()
    with db.uow() as uow:
        account = accounts.create_account(uow.session, email="bench@example.com", now=now)
        assistant = assistants.create_assistant(
            uow.session, account_id=account.id, fields=AssistantFields(name="bench"), now=now
        )
        file = TrainingFile(
            assistant_id=assistant.id,
            account_id=account.id,
            filename="corpus.txt",
            size=0,
            sha256="0" * 64,
            status="ready",
            progress=100,
            pages=1,
            chunks=size,
            tokens=0,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(file)
        uow.session.flush()
        assistant_id, file_id = assistant.id, file.id
        uow.commit()
    batch = 5000
    for start in range(0, size, batch):
        count = min(batch, size - start)
        made = vectors.make(count)
        rows = [
            {
                "assistant_id": assistant_id,
                "file_id": file_id,
                "ordinal": start + i,
                "page": 1,
                "heading": "",
                "text": sentence(rng, 60),
                "tokens": 80,
                "embedding": made[i].astype("<f4").tobytes(),
            }
            for i in range(count)
        ]
        with db.uow() as uow:
            uow.session.execute(insert(Chunk), rows)
            uow.commit()
    if db.is_postgres:
        # The steady state autovacuum keeps: statistics, and the GIN index's
        # pending list merged (VACUUM cannot run inside a transaction).
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE chunks"))
    return assistant_id


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(
    db: Database, assistant_id: int, queries: int, rng: np.random.Generator, vectors: Vectors
) -> dict:
    embedder, cache = FixedQueryEmbedder(), VectorCache(background=False)
    exact = VectorCache(approximate_above=10**9)
    timings, first, overlap = [], 0.0, []
    for n in range(queries + 5):
        embedder.next = vectors.make(1)[0]
        question = " ".join(random.choice(VOCABULARY[:2000]) for _ in range(6))
        started = time.perf_counter()
        with db.read() as session:
            found = retrieve(
                session,
                assistant_id=assistant_id,
                question=question,
                embedder=embedder,
                vectors=cache,
                passages=3,
                budget=400,
            )
        elapsed = (time.perf_counter() - started) * 1000
        assert found
        if n == 0:
            first = elapsed
        if n >= 5:  # the first queries load the matrix and warm the caches
            timings.append(elapsed)
        if n < 100:  # untimed: the dense search against an exact one
            with db.read() as session:
                got, want = (
                    c.search(session, assistant_id=assistant_id, query=embedder.next, limit=10)
                    for c in (cache, exact)
                )
            overlap.append(len(set(got) & set(want)) / len(want))
    index = cache.index(assistant_id)
    return {
        "p50": percentile(timings, 50),
        "p99": percentile(timings, 99),
        "mean": sum(timings) / len(timings),
        "first": first,
        "recall": sum(overlap) / len(overlap),
        "index": f"IVF {index.probes}/{len(index.centroids)}" if index else "exact",
        **keyword_alone(db, assistant_id, queries),
    }


def keyword_alone(db: Database, assistant_id: int, queries: int) -> dict:
    """Keyword search alone, on new questions: first with words this process has not
    counted yet (PostgreSQL counts a word's passages once per index version), then the
    same questions again, their words counted."""
    questions = [
        " ".join(random.choice(VOCABULARY[:2000]) for _ in range(6)) for _ in range(queries)
    ]
    figures = {}
    for label in ("keyword new words", "keyword seen words"):
        timings = []
        for question in questions:
            started = time.perf_counter()
            with db.read() as session:
                keyword.search(
                    session, assistant_id=assistant_id, question=question, limit=CANDIDATES
                )
            timings.append((time.perf_counter() - started) * 1000)
        figures[label] = (percentile(timings, 50), percentile(timings, 99))
    return figures


def embedding_latency(queries: int) -> dict:
    from chatmeter.knowledge.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    words = " ".join(QUESTIONS).split()
    rng = random.Random(1)
    fresh, repeated = [], []
    for n in range(queries):
        # A new question each time: a repeated one comes from the cache.
        question = f"{QUESTIONS[n % len(QUESTIONS)]} {' '.join(rng.sample(words, 3))} {n}?"
        started = time.perf_counter()
        embedder.embed([question])
        fresh.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        embedder.embed([question])
        repeated.append((time.perf_counter() - started) * 1000)
    return {
        "p50": percentile(fresh, 50),
        "p99": percentile(fresh, 99),
        "cached p50": percentile(repeated, 50),
    }


QUESTIONS = [
    "How many tokens are in one package of the subscription?",
    "Where do I paste the embed snippet on my website?",
    "Can I get a refund for tokens I did not use?",
    "Which file types can I upload to train my assistant?",
    "What happens when my account runs out of tokens?",
]


def load() -> float:
    return os.getloadavg()[0]


def postgres_database(admin_url: str) -> tuple[str, callable]:  # type: ignore[valid-type]
    name = f"chatmeter_bench_retrieval_{os.getpid()}"
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = (
        make_url(normalise_url(admin_url)).set(database=name).render_as_string(hide_password=False)
    )

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CHATMETER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--vectors", default="random", help="random, clustered or both (a,b)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, load average {load():.2f}"
    )
    print(
        f"{'backend':<10} {'vectors':<9} {'chunks':>8} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>7} "
        f"{'first ms':>8}  {'dense recall@10':<15} {'search':<11} "
        f"{'keyword alone, new words':<25} {'seen words':<14} load"
    )
    for backend in args.backends.split(","):
        for kind in args.vectors.split(","):
            for size in sizes:
                rng = np.random.default_rng(size)
                random.seed(size)
                if backend == "sqlite":
                    folder = tempfile.mkdtemp()
                    url, drop = f"sqlite:///{folder}/bench.db", (lambda: None)
                else:
                    url, drop = postgres_database(args.postgres)
                db = Database(url)
                db.create_all()
                try:
                    vectors = Vectors(rng, kind, size)
                    assistant_id = fill(db, size, rng, vectors)
                    before = load()
                    figures = measure(db, assistant_id, args.queries, rng, vectors)
                    print(
                        f"{backend:<10} {kind:<9} {size:>8,} {figures['p50']:>7.2f} "
                        f"{figures['p99']:>7.2f} {figures['mean']:>7.2f} {figures['first']:>8.0f}  "
                        f"{figures['recall']:<15.3f} {figures['index']:<11} "
                        + "{:<25} {:<14} ".format(
                            *(
                                "{:.1f}/{:.1f} ms".format(*figures[part])
                                for part in ("keyword new words", "keyword seen words")
                            )
                        )
                        + f"{before:.1f}-{load():.1f}",
                        flush=True,
                    )
                finally:
                    db.dispose()
                    drop()
    figures = embedding_latency(100)
    print(
        f"query embedding (all-MiniLM-L6-v2, one new question): p50 {figures['p50']:.2f} ms, "
        f"p99 {figures['p99']:.2f} ms; a repeated question: p50 {figures['cached p50']:.3f} ms "
        f"(load {load():.2f})"
    )


if __name__ == "__main__":
    main()
