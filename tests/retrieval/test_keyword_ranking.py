"""Keyword search ranks an assistant's passages alone, however many other assistants' match."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text

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
    """The plain query: every match of the assistant ranked by bm25; the best ``WIDER *
    limit`` ordered by the assistant's own word frequencies (``by_own_frequencies``), and
    the first ``limit`` of them."""
    wide = bm25_best(ctx, assistant_id, question, limit * keyword.WIDER)
    return by_own_frequencies(ctx, assistant_id, question, wide)[:limit]


def by_own_frequencies(ctx: Context, assistant_id: int, question: str, ids: list[int]) -> list[int]:
    """``ids`` by the sum of bm25's inverse document frequency of the question's words each
    contains, counted among the assistant's passages only; ties keep their order."""
    words = keyword.terms(question)
    with ctx.db.read() as session:
        total = session.scalar(
            text("SELECT count(*) FROM chunks WHERE assistant_id = :assistant"),
            {"assistant": assistant_id},
        )
        contains = {
            word: set(
                session.scalars(
                    text(
                        "SELECT chunks.id FROM chunks_fts"
                        " JOIN chunks ON chunks.id = chunks_fts.rowid"
                        " WHERE chunks_fts MATCH :word AND chunks.assistant_id = :assistant"
                    ),
                    {"word": f'"{word}"', "assistant": assistant_id},
                )
            )
            for word in words
        }
    weight = {
        word: math.log(1 + (total - len(found) + 0.5) / (len(found) + 0.5))
        for word, found in contains.items()
        if found
    }
    score = {i: sum(w for word, w in weight.items() if i in contains[word]) for i in ids}
    return sorted(ids, key=lambda i: (-score[i], ids.index(i)))


def bm25_best(ctx: Context, assistant_id: int, question: str, limit: int) -> list[int]:
    """Every match of the assistant ranked by bm25 (over the whole table), the best ``limit``."""
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
@pytest.mark.parametrize("probe_above", [keyword.PROBE_ABOVE, 0], ids=["read", "probed"])
def test_sqlite_ranks_as_one_query_would(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, probe_above: int
) -> None:
    """Whether a word's matches are read in one go or each candidate is looked up in them
    (``probe_above`` 0: every word), the order is the plain one."""
    monkeypatch.setattr(keyword, "PROBE_ABOVE", probe_above)
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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_weighs_words_by_the_assistants_own_passages_not_the_whole_table(
    ctx: Context,
) -> None:
    """FTS5's bm25 counts a word over every assistant's passages. Here another business's
    500 passages about refunds make "refund" the table's common word: this assistant's one
    passage on refunds, its rarest word, still comes first, as it did before they came."""
    account = new_account(ctx)
    ours = ["Refund policy."] + [f"Tokens renew monthly, note {n}." for n in range(11)]
    assistant, ids = make_assistant(ctx, account=account, texts=ours)
    question = "Refund of unused tokens?"
    with ctx.db.read() as session:
        alone = keyword.search(session, assistant_id=assistant, question=question, limit=5)
    other = new_account(ctx, email="other@example.com")
    make_assistant(ctx, account=other, texts=["Refund refund refund."] * 500)

    with ctx.db.read() as session:
        beside = keyword.search(session, assistant_id=assistant, question=question, limit=5)

    assert alone[0] == ids[0]
    assert beside[0] == ids[0]
    assert bm25_best(ctx, assistant, question, 5)[0] != ids[0]  # what bm25 alone would say


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


def test_word_counts_are_counted_again_for_a_new_index_version(ctx: Context) -> None:
    """On both databases: the counts are remembered per index version, and stemmed as
    each database matches ("rebinds", "rebind")."""

    account = new_account(ctx)
    assistant, ids = make_assistant(ctx, account=account, texts=[RARE] + [COMMON] * 3)
    with ctx.db.read() as session:
        keyword.search(session, assistant_id=assistant, question="rebinds", limit=5)
        before = keyword._frequencies(session, assistant, version(session, assistant), ["rebinds"])
    add_passages(ctx, assistant, like=ids[0], texts=["It rebinds again.", "Rebind it."] * 5)
    with ctx.db.read() as session:
        after = keyword._frequencies(session, assistant, version(session, assistant), ["rebinds"])

    assert before == ({"rebinds": 1}, 4)
    assert after == ({"rebinds": 11}, 14)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_big_assistants_common_words_are_counted_in_one_pass_as_each_would_be_alone(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``COMMON_ABOVE`` passages the common words' counts come from one pass over
    the passages (``ts_stat``): the same counts as the index gives each word alone,
    for stemmed words, stopwords, rare and absent words; a new index version counts
    again."""
    monkeypatch.setattr(keyword, "COMMON_ABOVE", 20)
    monkeypatch.setattr(keyword, "COMMON", 3)
    account = new_account(ctx)
    corpus = ["Running renews tokens."] * 6 + ["The runner's token ran."] * 4 + ["Rare quokka."]
    corpus += ["Widgets and domains."] * 15
    assistant, ids = make_assistant(ctx, account=account, texts=corpus)
    words = ["runs", "running", "tokens", "the", "quokka", "runner", "widget", "absent", "ran"]

    def alone(session: object) -> dict[str, int]:
        rows = session.execute(  # type: ignore[attr-defined]
            text(
                "SELECT w.word, (SELECT count(*) FROM chunks WHERE assistant_id = :assistant"
                "  AND search_vector @@ to_tsquery('english', w.word)) "
                "FROM unnest(CAST(:words AS text[])) AS w(word)"
            ),
            {"words": words, "assistant": assistant},
        )
        return {word: int(count) for word, count in rows}

    counted_alone: list[str] = []

    def watch(conn: object, cursor: object, statement: str, params: object, *args: object) -> None:
        if "unnest" in statement and "count(*)" in statement and isinstance(params, dict):
            counted_alone.extend(params["words"])

    event.listen(ctx.db.engine, "before_cursor_execute", watch)
    with ctx.db.read() as session:
        index = version(session, assistant)
        memory = keyword._MEMORY.setdefault(session.get_bind(), keyword._Counts())
        # While another thread makes the pass, this one counts its words alone.
        memory.passing.add((assistant, index))
        assert keyword._frequencies(session, assistant, index, words[:2]) == (
            {"runs": 6, "running": 6},
            26,
        )
        assert sorted(counted_alone) == ["running", "runs"] and not memory.common
        memory.passing.clear()
        del counted_alone[:]
        found, total = keyword._frequencies(session, assistant, index, words[2:])
        assert sorted(counted_alone) == ["absent", "quokka", "the"]  # the rest were common
        found, total = keyword._frequencies(session, assistant, index, words)
        assert found == alone(session) and total == 26
        assert found["running"] == found["runs"] == 6 and found["quokka"] == 1
        assert memory.common[(assistant, index)]["token"] == 10  # the pass was made
    event.remove(ctx.db.engine, "before_cursor_execute", watch)

    add_passages(ctx, assistant, like=ids[0], texts=["More tokens."])
    with ctx.db.read() as session:
        newer = version(session, assistant)
        found, total = keyword._frequencies(session, assistant, newer, words)
        assert found == alone(session) and found["tokens"] == 11 and total == 27
        assert list(memory.common) == [(assistant, newer)]  # the older version's dropped


def add_passages(ctx: Context, assistant_id: int, *, like: int, texts: list[str]) -> None:
    """More passages in the file of passage ``like`` (with its vector), as training adds
    them: with a new index version."""
    from chatmeter.training.job import bump_index
    from chatmeter.training.models import Chunk

    with ctx.db.uow() as uow:
        first = uow.session.get(Chunk, like)
        assert first is not None
        for i, passage in enumerate(texts):
            uow.session.add(
                Chunk(
                    assistant_id=assistant_id,
                    file_id=first.file_id,
                    ordinal=100 + i,
                    page=1,
                    heading="",
                    text=passage,
                    tokens=len(passage.split()),
                    embedding=first.embedding,
                )
            )
        bump_index(uow.session, assistant_id, ctx.clock.now())
        uow.commit()


def version(session: object, assistant_id: int) -> int:
    from chatmeter.assistants.models import Assistant

    found = session.get(Assistant, assistant_id)  # type: ignore[attr-defined]
    return int(found.index_version)


ZIPF = [f"w{n:03d}" for n in range(60)]  # w000 in about every passage, w059 in a few


def ranked_by_one_statement(
    session: object, assistant_id: int, weights: dict[str, float], limit: int
) -> list[int]:
    """The ranking written plainly: every match scored and ordered by score, then
    ``ts_rank_cd``, then id, in one statement."""
    params: dict[str, object] = {
        "query": " | ".join(weights),
        "assistant": assistant_id,
        "limit": limit,
    }
    score = []
    for i, (word, weight) in enumerate(weights.items()):
        params[f"w{i}"], params[f"i{i}"] = word, weight
        score.append(
            f"CASE WHEN search_vector @@ to_tsquery('english', :w{i}) THEN :i{i} ELSE 0 END"
        )
    rows = session.execute(  # type: ignore[attr-defined]
        text(
            f"SELECT id, {' + '.join(score)} AS score "
            "FROM chunks, to_tsquery('english', :query) AS query "
            "WHERE assistant_id = :assistant AND search_vector @@ query "
            "ORDER BY score DESC, ts_rank_cd(search_vector, query) DESC, id LIMIT :limit"
        ),
        params,
    )
    return [int(row[0]) for row in rows]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_ranks_the_rarest_words_first_and_answers_as_the_whole_query(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every way the search can take (every match ranked, the rare words' passages alone,
    those and the groups of common words that could still reach them) gives exactly the
    plain statement's ids in its order, for questions mixing rare and common words over
    a corpus with many ties; and both shortcuts are taken for many of them."""
    rng = np.random.default_rng(13)
    weights = 1 / np.arange(1, len(ZIPF) + 1)
    weights /= weights.sum()
    corpus = [" ".join(rng.choice(ZIPF, int(rng.integers(3, 15)), p=weights)) for _ in range(600)]
    account = new_account(ctx)
    assistant, _ = make_assistant(ctx, account=account, texts=corpus)
    queries: list[str] = []
    ranked = keyword._ranked

    def counted(*args: object, among: str | None = None, **kwargs: object) -> object:
        queries.append(among or "")
        return ranked(*args, among=among, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keyword, "_ranked", counted)
    paths = {"rare words alone": 0, "with groups of common words": 0}
    with ctx.db.read() as session:
        index = version(session, assistant)
        for n in range(150):
            words = [str(w) for w in dict.fromkeys(rng.choice(ZIPF, int(rng.integers(1, 8))))]
            limit = int(rng.choice([1, 5, 8, 30]))
            found, total = keyword._frequencies(session, assistant, index, words)
            plain = ranked_by_one_statement(
                session, assistant, keyword.idf_weights(found, total), limit
            )
            for budget in (0, 20, 120, None):  # None: the product's own budget
                del queries[:]
                fast = keyword._postgres_search(
                    session, assistant, index, words, limit, budget=budget
                )
                assert fast == plain, (n, words, limit, budget)
                if len(queries) == 1 and queries[0] != " | ".join(keyword.terms(" ".join(words))):
                    paths["rare words alone"] += 1
                if any("&" in among for among in queries):
                    paths["with groups of common words"] += 1
    assert min(paths.values()) >= 20, paths  # each shortcut was taken, not only the whole query


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_a_tie_with_the_rare_words_best_is_broken_as_the_whole_query_breaks_it(
    ctx: Context,
) -> None:
    """Two words in as many passages weigh the same; only one fits the rare words'
    budget. The other's passages tie with its passages on score and win on
    ``ts_rank_cd`` (they repeat the word), so they must come first, as in the whole
    query."""
    account = new_account(ctx)
    corpus = ["alpha"] * 3 + ["bravo bravo bravo"] * 3 + ["charlie"] * 40
    assistant, ids = make_assistant(ctx, account=account, texts=corpus)
    with ctx.db.read() as session:
        index = version(session, assistant)
        found = keyword._postgres_search(session, assistant, index, ["alpha", "bravo"], 3, budget=3)
        whole = keyword._postgres_search(session, assistant, index, ["alpha", "bravo"], 3, budget=0)

    assert found == whole == ids[3:6]


@settings(max_examples=300, deadline=None)
@given(
    eighths=st.lists(st.integers(1, 80), min_size=1, max_size=8),
    need=st.integers(0, 240),
)
def test_the_groups_of_words_are_the_smallest_sets_that_reach_a_score(
    eighths: list[int], need: int
) -> None:
    """A passage's words reach ``need`` exactly when they contain one of the groups, and
    no group holds a word it could do without. (Weights in eighths: sums are exact.)"""
    words = [f"w{i}" for i in range(len(eighths))]
    weight = {word: n / 8 for word, n in zip(words, eighths, strict=True)}
    heaviest_first = sorted(words, key=lambda w: (-weight[w], w))
    groups = keyword._groups_reaching(heaviest_first, weight, need / 8)
    assume(len(groups) <= keyword.MAX_GROUPS)
    for size in range(1, len(words) + 1):  # a passage without any word is no match
        for chosen in itertools.combinations(words, size):
            reaches = sum(weight[w] for w in chosen) >= need / 8
            assert reaches == any(set(g) <= set(chosen) for g in groups), chosen
    for group in groups:  # minimal: without its lightest word it falls short
        assert len(group) == 1 or sum(weight[w] for w in group[:-1]) < need / 8
