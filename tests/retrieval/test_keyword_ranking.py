"""Keyword search ranks an assistant's passages alone, however many other assistants' match."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from chatmeter.context import Context
from chatmeter.retrieval import keyword
from tests.retrieval.test_search_parts import make_assistant
from tests.support.accounts import new_account

QUESTIONS = [
    "tokens",
    "How do monthly tokens renew?",
    "widget colour and domains",
    "refund policy for packages",
    "nothing matches this",
]


def texts(rng: np.random.Generator, count: int) -> list[str]:
    words = ["tokens", "renew", "monthly", "widget", "colour", "domains", "refund", "policy"]
    return [" ".join(rng.choice(words, int(rng.integers(1, 12)))) for _ in range(count)]


def ranked_in_one_query(ctx: Context, assistant_id: int, question: str, limit: int) -> list[int]:
    """The plain query: every match of the assistant ranked by bm25."""
    words = keyword.terms(question)
    with ctx.db.read() as session:
        rows = session.execute(
            text(
                "SELECT chunks.id FROM chunks_fts JOIN chunks ON chunks.id = chunks_fts.rowid "
                "WHERE chunks_fts MATCH :match AND chunks.assistant_id = :assistant "
                "ORDER BY bm25(chunks_fts), chunks.id LIMIT :limit"
            ),
            {
                "match": " OR ".join(f'"{w}"' for w in words),
                "assistant": assistant_id,
                "limit": limit,
            },
        )
        return [row[0] for row in rows]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_ranks_as_one_query_would(ctx: Context) -> None:
    rng = np.random.default_rng(5)
    account = new_account(ctx)
    # A small assistant and a big one sharing the FTS table: the small one's
    # best are rarely among the table's best (the fallback), the big one's are.
    small, small_ids = make_assistant(ctx, account=account, texts=texts(rng, 40))
    big, big_ids = make_assistant(ctx, account=account, texts=texts(rng, 400))
    for question in QUESTIONS:
        for limit in (1, 5, 30):
            for assistant_id, ids in ((small, small_ids), (big, big_ids)):
                with ctx.db.read() as session:
                    found = keyword.search(
                        session, assistant_id=assistant_id, question=question, limit=limit
                    )
                assert found == ranked_in_one_query(ctx, assistant_id, question, limit)
                assert set(found) <= set(ids)


def test_an_assistant_sees_only_its_own_matches(ctx: Context) -> None:
    account = new_account(ctx)
    mine, my_ids = make_assistant(
        ctx, account=account, texts=["Tokens renew on the first of the month."]
    )
    make_assistant(ctx, account=account, texts=["tokens tokens tokens renew renew"] * 200)
    with ctx.db.read() as session:
        found = keyword.search(session, assistant_id=mine, question="tokens renew", limit=3)
    assert found == my_ids
