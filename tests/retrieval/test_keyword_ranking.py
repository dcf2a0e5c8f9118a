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


RARE = "Use nonlocal: it rebinds names."
COMMON = "variable function enclosing statement variable function statement"


def test_a_rare_word_counts_for_more_than_common_ones_on_both_databases(ctx: Context) -> None:
    """bm25 on SQLite, inverse document frequencies on PostgreSQL: the one passage with the
    question's rare word comes first, ahead of thirty that repeat its common words."""
    account = new_account(ctx)
    assistant, ids = make_assistant(ctx, account=account, texts=[RARE] + [COMMON] * 30)
    question = "What rebinds a variable of an enclosing function, which statement?"

    with ctx.db.read() as session:
        found = keyword.search(session, assistant_id=assistant, question=question, limit=5)

    assert found[0] == ids[0]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_word_counts_are_counted_again_for_a_new_index_version(ctx: Context) -> None:
    from chatmeter.training.job import bump_index
    from chatmeter.training.models import Chunk

    account = new_account(ctx)
    assistant, ids = make_assistant(ctx, account=account, texts=[RARE] + [COMMON] * 3)
    with ctx.db.read() as session:
        keyword.search(session, assistant_id=assistant, question="rebinds", limit=5)
        before = keyword._frequencies(session, assistant, version(session, assistant), ["rebinds"])
    with ctx.db.uow() as uow:
        first = uow.session.get(Chunk, ids[0])
        assert first is not None
        for i in range(5):
            uow.session.add(
                Chunk(
                    assistant_id=assistant,
                    file_id=first.file_id,
                    ordinal=100 + i,
                    page=1,
                    heading="",
                    text="It rebinds again.",
                    tokens=3,
                    embedding=first.embedding,
                )
            )
        bump_index(uow.session, assistant, ctx.clock.now())
        uow.commit()
    with ctx.db.read() as session:
        after = keyword._frequencies(session, assistant, version(session, assistant), ["rebinds"])

    assert before == ({"rebinds": 1}, 4)
    assert after == ({"rebinds": 6}, 9)


def version(session: object, assistant_id: int) -> int:
    from chatmeter.assistants.models import Assistant

    found = session.get(Assistant, assistant_id)  # type: ignore[attr-defined]
    return int(found.index_version)


ZIPF = [f"w{n:03d}" for n in range(60)]  # w000 in about every passage, w059 in a few


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_ranks_the_rarest_words_first_and_answers_as_the_whole_query(
    ctx: Context,
) -> None:
    """The shortcut (the rare words' passages ranked alone, kept only when no other
    passage can reach them) gives exactly the whole query's ids in its order, for
    questions mixing rare and common words; and it is taken for many of them."""
    rng = np.random.default_rng(13)
    weights = 1 / np.arange(1, len(ZIPF) + 1)
    weights /= weights.sum()
    corpus = [" ".join(rng.choice(ZIPF, int(rng.integers(3, 15)), p=weights)) for _ in range(600)]
    account = new_account(ctx)
    assistant, _ = make_assistant(ctx, account=account, texts=corpus)
    shortcuts = 0
    with ctx.db.read() as session:
        index = version(session, assistant)
        for n in range(150):
            words = [str(w) for w in dict.fromkeys(rng.choice(ZIPF, int(rng.integers(1, 8))))]
            limit = int(rng.choice([1, 5, 8, 30]))
            whole = keyword._postgres_search(session, assistant, index, words, limit, budget=0)
            for budget in (20, 120):
                fast = keyword._postgres_search(
                    session, assistant, index, words, limit, budget=budget
                )
                assert fast == whole, (n, words, limit, budget)
            found, total = keyword._frequencies(session, assistant, index, words)
            shortcuts += (
                keyword._rare_first(
                    session, assistant, keyword.idf_weights(found, total), found, limit, 120
                )
                is not None
            )
    assert shortcuts >= 20  # the shortcut was taken, not only the whole query
