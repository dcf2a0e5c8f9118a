"""Retrieval latency at 10,000 and 100,000 chunks, on SQLite and PostgreSQL.

    .venv/bin/python bench/retrieval.py [--postgres URL] [--queries N] [--sizes 10000,100000]

An assistant is filled with synthetic passages: sentences drawn from a
5,000-word vocabulary with a Zipf-like frequency (so keyword search meets
common and rare words as in real text) and random unit vectors of the
embedding model's 384 dimensions. Each query is a handful of vocabulary words
and a random unit vector. Measured per query, as the chat pipeline calls it:
keyword search + vector search + rank fusion + fetching the passages, with the
in-memory vector matrix warm (it is loaded once per process and index
version). Embedding the question with the real model is measured on its own.
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
from chatmeter.retrieval.search import retrieve
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


def sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(VOCABULARY[i] for i in rng.choice(len(VOCABULARY), words, p=WEIGHTS))


def fill(db: Database, size: int, rng: np.random.Generator) -> int:
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
        vectors = unit_vectors(rng, count)
        rows = [
            {
                "assistant_id": assistant_id,
                "file_id": file_id,
                "ordinal": start + i,
                "page": 1,
                "heading": "",
                "text": sentence(rng, 60),
                "tokens": 80,
                "embedding": vectors[i].astype("<f4").tobytes(),
            }
            for i in range(count)
        ]
        with db.uow() as uow:
            uow.session.execute(insert(Chunk), rows)
            uow.commit()
    if db.is_postgres:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE chunks"))
    return assistant_id


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(db: Database, assistant_id: int, queries: int, rng: np.random.Generator) -> dict:
    embedder, cache = FixedQueryEmbedder(), VectorCache()
    timings = []
    for n in range(queries + 5):
        embedder.next = unit_vectors(rng, 1)[0]
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
        if n >= 5:  # the first queries load the matrix and warm the caches
            timings.append(elapsed)
    return {
        "p50": percentile(timings, 50),
        "p99": percentile(timings, 99),
        "mean": sum(timings) / len(timings),
    }


def embedding_latency(queries: int) -> dict:
    from chatmeter.knowledge.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    timings = []
    for _ in range(queries):
        question = "How many tokens are in one package of the subscription?"
        started = time.perf_counter()
        embedder.embed([question])
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50": percentile(timings, 50), "p99": percentile(timings, 99)}


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
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    print(f"{'backend':<10} {'chunks':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for backend in ("sqlite", "postgresql"):
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
                assistant_id = fill(db, size, rng)
                figures = measure(db, assistant_id, args.queries, rng)
                print(
                    f"{backend:<10} {size:>8,} {figures['p50']:>8.2f} {figures['p99']:>8.2f} "
                    f"{figures['mean']:>8.2f}",
                    flush=True,
                )
            finally:
                db.dispose()
                drop()
    figures = embedding_latency(100)
    print(
        f"query embedding (all-MiniLM-L6-v2, one question): p50 {figures['p50']:.2f} ms, "
        f"p99 {figures['p99']:.2f} ms"
    )


if __name__ == "__main__":
    main()
