"""Keyword search over an assistant's passages: FTS5 bm25 on SQLite, full-text on PostgreSQL.

A visitor's question is natural language, so its words are OR-ed: a passage
matching more (and rarer) words ranks higher, none is required.

SQLite's FTS5 table holds every assistant's passages. Ranking the matches and
only then keeping the assistant's would look up every matching row in
``chunks`` (100,000 passages: 6,000 matches and 20 ms for a typical question),
so the best matches of the whole table are ranked first, and the assistant's
kept from those; only when too few of them are the assistant's does the
search rank all of the assistant's matches. Both give the same passages in
the same order. Those passages are then ordered as PostgreSQL orders its
matches: by the sum of the inverse document frequencies of the question's
words each contains, counted among the assistant's own passages, so that no
other business's documents weigh on an assistant's ranking (bm25 itself
counts them over the whole table).
"""

from __future__ import annotations

import json
import math
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 32
WIDER = 4  # SQLite: rank this many times ``limit`` matches of the whole table first
# SQLite: a word in more of the assistant's passages than this many times the candidates
# is looked up candidate by candidate; a rarer word's matches are read in one go.
PROBE_ABOVE = 100
# Both databases: how many passages contain a word, by (assistant, index version, word), and
# how many passages an assistant has, by (assistant, index version); in each process,
# for each database it talks to.
MAX_COUNTS = 100_000
# An assistant with at least this many passages has its common words counted all at once,
# in one pass over its passages (``ts_stat``), the first time a question brings a word
# this process has not counted for its index version: counting a common word alone reads
# thousands of rows (100,000 passages: 10 ms for a word in 6 % of them), the pass 0.6 s.
COMMON_ABOVE = 20_000
COMMON = 50  # a word in at least this many passages is common; a rarer one is counted alone
MAX_COMMON = 4  # assistants whose common words this process keeps


@dataclass
class _Counts:
    words: dict[tuple[int, int, str], int] = field(default_factory=dict)
    totals: dict[tuple[int, int], int] = field(default_factory=dict)
    # The common words' lexemes of big assistants, by (assistant, index version): how
    # many passages contain each.
    common: dict[tuple[int, int], dict[str, int]] = field(default_factory=dict)
    # A word's lexeme, as PostgreSQL's english configuration makes it (None: not one).
    lexemes: dict[str, str | None] = field(default_factory=dict)
    # The (assistant, index version) whose pass a thread is making: the others count
    # their words alone meanwhile rather than make the same pass at once.
    passing: set[tuple[int, int]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_MEMORY: weakref.WeakKeyDictionary[Any, _Counts] = weakref.WeakKeyDictionary()
# Words that match nearly every passage: they add nothing to the ranking but
# make the search visit every row. (PostgreSQL's english configuration drops
# these itself; SQLite's FTS5 does not.)
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)


def terms(question: str) -> list[str]:
    """The distinct words of a question, lower-cased, at most ``MAX_TERMS``."""
    seen: list[str] = []
    for word in _WORD.findall(question.lower()):
        if len(word) > 1 and word not in STOPWORDS and word not in seen:
            seen.append(word)
    return seen[:MAX_TERMS]


def search(
    session: Session, *, assistant_id: int, question: str, limit: int, version: int | None = None
) -> list[int]:
    """Chunk ids, best match first. ``version``: the assistant's index version, when the
    caller read it already (PostgreSQL's ranking needs it; it is read otherwise)."""
    words = terms(question)
    if not words:
        return []
    if version is None:
        version = session.scalar(
            text("SELECT index_version FROM assistants WHERE id = :assistant"),
            {"assistant": assistant_id},
        )
    if session.get_bind().dialect.name == "postgresql":
        return _postgres_search(session, assistant_id, int(version or 0), words, limit)
    return _sqlite_search(session, assistant_id, int(version or 0), words, limit)


def _postgres_search(
    session: Session,
    assistant_id: int,
    version: int,
    words: list[str],
    limit: int,
    *,
    budget: int | None = None,
) -> list[int]:
    """The assistant's passages matching any word, ranked as bm25 ranks on SQLite: a rare
    word counts for more than a common one. PostgreSQL's own ranking (``ts_rank_cd``)
    knows nothing of how common a word is, so each word's inverse document frequency
    among the assistant's passages is counted first (an index lookup per word, once per
    index version and process), and the matches are ordered by the sum of the
    frequencies of the words they contain, ``ts_rank_cd`` breaking ties.

    Ranking every match is what costs (a common word: thousands of rows), so the rarest
    words' passages are ranked first (``_rare_first``); the whole query runs only when
    those cannot prove they are the best."""
    # The plan (EXPLAIN ANALYZE, 10,000 and 100,000 passages): a bitmap scan of the GIN
    # index per word not counted before, then one for the query and a top-N heapsort.
    found, total = _frequencies(session, assistant_id, version, words)
    weights = idf_weights(found, total)
    if not weights:
        return []
    if budget is None:
        budget = min(RARE_ROWS, total // RARE_SHARE)
    shortcut = _rare_first(session, assistant_id, weights, found, limit, budget)
    if shortcut is not None:
        return shortcut
    return [match.id for match in _ranked(session, assistant_id, weights, limit)]


# The rarest words' passages ranked first, when they are at most this many, and at most
# this share of the assistant's passages (a bigger share: questions whose words all fit
# rank every match; figures in docs/benchmarks.md).
RARE_ROWS = 2_000
RARE_SHARE = 10  # a tenth
# Past this many combinations of the common words that could reach the best, the whole
# query is ranked instead.
MAX_GROUPS = 64


class _Match(NamedTuple):
    id: int
    score: float  # the sum of the weights of the question's words the passage contains
    rank: float  # ts_rank_cd over all of them: breaks ties


def _rare_first(
    session: Session,
    assistant_id: int,
    weights: dict[str, float],
    found: dict[str, int],
    limit: int,
    budget: int,
) -> list[int] | None:
    """The whole query's answer from far fewer rows, or None when that cannot be done.

    First the passages with any of the rarest words (at most ``budget`` of them) are
    ranked, with the whole query's score, ``ts_rank_cd`` and tie-break. A passage with
    none of those words scores at most the sum of the weights of the other words it
    contains; when that cannot reach the ``limit``-th score found, nothing else can
    enter the best (the whole query's ids in its order). Otherwise the only passages
    that still can are those containing one of the groups of common words whose weights
    add up to that score: they are found with the index (``a & b``, a few rows where
    ``a | b`` are thousands), ranked the same way, and merged with the first.
    """
    rare: list[str] = []
    rows = 0
    for word in sorted(weights, key=lambda w: (-weights[w], w)):  # rarest first
        if rows + found[word] > budget:
            break
        rare.append(word)
        rows += found[word]
    others = [word for word in weights if word not in rare]
    if not rare or not others:
        return None  # nothing cheap to rank first, or the whole query is this cheap
    ranked = _ranked(session, assistant_id, weights, limit, among=" | ".join(rare))
    # What a passage without a rare word must score to enter (a tie may enter by
    # ts_rank_cd; the margin absorbs the order in which the sums were added).
    need = ranked[-1].score * (1 - 1e-9) - 1e-9 if len(ranked) == limit else 0.0
    groups = _groups_reaching(sorted(others, key=lambda w: (-weights[w], w)), weights, need)
    if not groups:
        return [match.id for match in ranked]
    if len(groups) > MAX_GROUPS:
        return None
    more = _ranked(
        session,
        assistant_id,
        weights,
        limit,
        among=" | ".join("(" + " & ".join(group) + ")" for group in groups),
    )
    best = {match.id: match for match in ranked + more}.values()
    return [m.id for m in sorted(best, key=lambda m: (-m.score, -m.rank, m.id))[:limit]]


def _groups_reaching(words: list[str], weights: dict[str, float], need: float) -> list[list[str]]:
    """The smallest groups of ``words`` (heaviest first) whose weights add up to at least
    ``need``: every set of words that reaches it contains one. Stops past
    ``MAX_GROUPS``."""
    groups: list[list[str]] = []
    left = [sum(weights[w] for w in words[i:]) for i in range(len(words))] + [0.0]

    def extend(start: int, group: list[str], total: float) -> None:
        for i in range(start, len(words)):
            if len(groups) > MAX_GROUPS or total + left[i] < need:
                return  # too many, or the lighter words left cannot reach it
            added = total + weights[words[i]]
            if added >= need:
                groups.append([*group, words[i]])  # minimal: its lightest is needed
            else:
                extend(i + 1, [*group, words[i]], added)

    extend(0, [], 0.0)
    return groups


def _ranked(
    session: Session,
    assistant_id: int,
    weights: dict[str, float],
    limit: int,
    *,
    among: str | None = None,
) -> list[_Match]:
    """The best ``limit`` passages matching the query ``among`` (default: any word of
    ``weights``), scored and ordered as the whole query orders them.

    ``ts_rank_cd`` only breaks ties, and it costs five times what finding and scoring a
    passage does (10,000 matches: 47 of 59 ms), so the matches are cut by score first,
    keeping every passage tied with the ``limit``-th (``WITH TIES``), and only those are
    ranked by it: the same passages in the same order as ranking every match."""
    params: dict[str, object] = {
        "query": " | ".join(weights),
        "among": among or " | ".join(weights),
        "assistant": assistant_id,
        "limit": limit,
    }
    score = []
    for i, (word, weight) in enumerate(weights.items()):
        params[f"w{i}"], params[f"i{i}"] = word, weight
        score.append(
            f"CASE WHEN search_vector @@ to_tsquery('english', :w{i}) THEN :i{i} ELSE 0 END"
        )
    rows = session.execute(
        text(
            f"WITH best AS (SELECT id, {' + '.join(score)} AS score FROM chunks "
            "  WHERE assistant_id = :assistant AND search_vector @@ to_tsquery('english', :among)"
            "  ORDER BY score DESC FETCH FIRST :limit ROWS WITH TIES) "
            "SELECT best.id, best.score, ts_rank_cd(chunks.search_vector, query) AS rank "
            "FROM best JOIN chunks ON chunks.id = best.id, to_tsquery('english', :query) AS query "
            "ORDER BY best.score DESC, rank DESC, best.id "
            "LIMIT :limit"
        ),
        params,
    )
    return [_Match(int(row[0]), float(row[1]), float(row[2])) for row in rows]


def _frequencies(
    session: Session, assistant_id: int, version: int, words: list[str]
) -> tuple[dict[str, int], int]:
    """How many of the assistant's passages contain each word, and how many it has: from
    this process's memory when counted before for the same index version (the passages
    change only with a new version), else counted with the database's own index
    (``_count_postgres``, ``_count_sqlite``), each word as that database matches it."""
    memory = _MEMORY.setdefault(session.get_bind(), _Counts())
    key = (assistant_id, version)
    total = memory.totals.get(key)
    if total is None:
        total = int(
            session.scalar(
                text("SELECT count(*) FROM chunks WHERE assistant_id = :assistant"),
                {"assistant": assistant_id},
            )
            or 0
        )
    missing = [word for word in words if (*key, word) not in memory.words]
    counted: dict[str, int] = {}
    if missing:
        if session.get_bind().dialect.name == "postgresql":
            counted = _count_postgres(session, memory, key, total, missing)
        else:
            counted = _count_sqlite(session, assistant_id, missing)
        with memory.lock:
            if len(memory.words) + len(counted) > MAX_COUNTS:
                memory.words.clear()  # starting afresh beats bookkeeping: a count is one lookup
                memory.totals.clear()
            memory.words.update({(*key, word): count for word, count in counted.items()})
    memory.totals[key] = total
    found = {w: counted[w] if w in counted else memory.words.get((*key, w), 0) for w in words}
    return found, total


def _count_postgres(
    session: Session, memory: _Counts, key: tuple[int, int], total: int, words: list[str]
) -> dict[str, int]:
    """The words' passage counts from a big assistant's common words (``_common``), the
    others each counted with the GIN index."""
    assistant_id = key[0]
    counted: dict[str, int] = {}
    if total >= COMMON_ABOVE:
        common = _common(session, memory, assistant_id, key)
        if common is not None:
            for word, lexeme in _lexemes(session, memory, words).items():
                if lexeme is not None and lexeme in common:
                    counted[word] = common[lexeme]
    alone = [word for word in words if word not in counted]
    if alone:
        rows = session.execute(
            text(
                "SELECT w.word, (SELECT count(*) FROM chunks WHERE assistant_id = :assistant"
                "   AND search_vector @@ to_tsquery('english', w.word)) AS found "
                "FROM unnest(CAST(:words AS text[])) AS w(word)"
            ),
            {"words": alone, "assistant": assistant_id},
        ).all()
        counted |= {word: int(count) for word, count in rows}
    return counted


def _count_sqlite(session: Session, assistant_id: int, words: list[str]) -> dict[str, int]:
    """The words' passage counts, as FTS5 matches them (porter stems), in one statement."""
    params: dict[str, object] = {"assistant": assistant_id}
    parts = []
    for i, word in enumerate(words):
        params[f"w{i}"] = f'"{word}"'
        parts.append(
            f"SELECT {i}, (SELECT count(*) FROM chunks WHERE chunks.assistant_id = :assistant"
            f" AND chunks.id IN (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :w{i}))"
        )
    rows = session.execute(text(" UNION ALL ".join(parts)), params).all()
    return {words[i]: int(count) for i, count in rows}


def _common(
    session: Session, memory: _Counts, assistant_id: int, key: tuple[int, int]
) -> dict[str, int] | None:
    """The lexemes in at least ``COMMON`` of the assistant's passages, with how many contain
    each: one pass over its passages per index version and process. None while another
    thread makes that pass."""
    common = memory.common.get(key)
    if common is not None:
        return common
    with memory.lock:
        if key in memory.passing:
            return None
        memory.passing.add(key)
    try:
        rows = session.execute(
            text(
                "SELECT word, ndoc FROM ts_stat("
                "  format('SELECT search_vector FROM chunks WHERE assistant_id = %s', :assistant)"
                ") WHERE ndoc >= :common"
            ),
            {"assistant": assistant_id, "common": COMMON},
        ).all()
        common = {str(lexeme): int(count) for lexeme, count in rows}
        with memory.lock:
            kept = list(memory.common)
            stale = [k for k in kept if k[0] == key[0]]  # older versions
            for old in stale or kept[: max(0, len(kept) + 1 - MAX_COMMON)]:
                memory.common.pop(old, None)
            memory.common[key] = common
        return common
    finally:
        with memory.lock:
            memory.passing.discard(key)


_ONE_LEXEME = re.compile(r"'((?:[^']|'')*)'")
_UNSEEN = "'"  # no lexeme is a lone quote


def _lexemes(session: Session, memory: _Counts, words: list[str]) -> dict[str, str | None]:
    """Each word's lexeme as ``to_tsquery('english', word)`` makes it; None when that is
    not one lexeme (a stopword, or a word the parser splits)."""
    known: dict[str, str | None] = {}
    for word in words:  # get(), not "in" then []: another thread may clear the memory
        lexeme = memory.lexemes.get(word, _UNSEEN)
        if lexeme != _UNSEEN:
            known[word] = lexeme
    new = [word for word in words if word not in known]
    if new:
        rows = session.execute(
            text(
                "SELECT w.word, CAST(to_tsquery('english', w.word) AS text) "
                "FROM unnest(CAST(:words AS text[])) AS w(word)"
            ),
            {"words": new},
        ).all()
        for word, query in rows:
            one = _ONE_LEXEME.fullmatch(query)
            known[word] = one.group(1).replace("''", "'") if one else None
        if len(memory.lexemes) + len(rows) > MAX_COUNTS:
            memory.lexemes.clear()
        memory.lexemes.update({word: known[word] for word in new})
    return known


def idf_weights(found: dict[str, int], total: int) -> dict[str, float]:
    """bm25's inverse document frequency of each word that some passage contains."""
    return {
        word: math.log(1 + (total - count + 0.5) / (count + 0.5))
        for word, count in found.items()
        if count > 0
    }


def _sqlite_search(
    session: Session, assistant_id: int, version: int, words: list[str], limit: int
) -> list[int]:
    """The assistant's ``WIDER * limit`` best matches by FTS5's bm25, ordered by the sum of
    the inverse document frequencies, among the assistant's own passages, of the question's
    words each contains (bm25's order breaking ties), as PostgreSQL orders its matches;
    the first ``limit`` of them.

    bm25 weighs a word by how common it is in the whole table, every assistant's
    passages together: another business's documents made a word common or rare for
    this one. The assistant's own counts (``_frequencies``) weigh it by its
    passages alone; bm25 still finds the matches and weighs how often and how densely
    a passage repeats the words."""
    best = _bm25_best(session, assistant_id, " OR ".join(f'"{w}"' for w in words), limit * WIDER)
    if len(best) < 2:
        return best
    found, total = _frequencies(session, assistant_id, version, words)
    weights = idf_weights(found, total)
    params: dict[str, object] = {"ids": json.dumps(best)}
    ctes, parts = [], []
    for i, word in enumerate(weights):
        params[f"w{i}"] = f'"{word}"'
        if found[word] > PROBE_ABOVE * len(best):
            # A common word: look each candidate up in its match list rather than read it.
            parts.append(
                f"SELECT {i}, ids.value FROM json_each(:ids) AS ids"
                f" WHERE ids.value IN (SELECT rowid FROM chunks_fts"
                f" WHERE chunks_fts MATCH :w{i} AND rowid = ids.value)"
            )
            continue
        ctes.append(
            f"m{i} AS MATERIALIZED"
            f" (SELECT rowid AS id FROM chunks_fts WHERE chunks_fts MATCH :w{i})"
        )
        parts.append(f"SELECT {i}, id FROM m{i} WHERE id IN (SELECT value FROM json_each(:ids))")
    score = dict.fromkeys(best, 0.0)
    if parts:
        weight = list(weights.values())
        statement = (f"WITH {', '.join(ctes)} " if ctes else "") + " UNION ALL ".join(parts)
        for word, chunk_id in session.execute(text(statement), params):
            score[chunk_id] += weight[word]
    order = {chunk_id: place for place, chunk_id in enumerate(best)}
    return sorted(best, key=lambda chunk_id: (-score[chunk_id], order[chunk_id]))[:limit]


def _bm25_best(session: Session, assistant_id: int, match: str, limit: int) -> list[int]:
    """The assistant's ``limit`` best matches of ``match`` by FTS5's bm25 (ties: by id)."""
    wide = limit * WIDER
    # MATERIALIZED: ranked and cut inside FTS5 before any row of chunks is read.
    best = session.execute(
        text(
            "WITH best AS MATERIALIZED ("
            " SELECT rowid AS id, bm25(chunks_fts) AS score FROM chunks_fts"
            " WHERE chunks_fts MATCH :match ORDER BY score, rowid LIMIT :wide) "
            "SELECT best.id, chunks.assistant_id FROM best JOIN chunks ON chunks.id = best.id "
            "ORDER BY best.score, best.id"
        ),
        {"match": match, "wide": wide},
    ).all()
    mine = [chunk_id for chunk_id, owner in best if owner == assistant_id]
    if len(mine) >= limit or len(best) < wide:
        # The assistant's best are among the table's best (or these are all the matches).
        return mine[:limit]
    rows = session.execute(
        text(
            "SELECT chunks.id FROM chunks_fts JOIN chunks ON chunks.id = chunks_fts.rowid "
            "WHERE chunks_fts MATCH :match AND chunks.assistant_id = :assistant "
            "ORDER BY bm25(chunks_fts), chunks.id LIMIT :limit"
        ),
        {"match": match, "assistant": assistant_id, "limit": limit},
    )
    return [row[0] for row in rows]
