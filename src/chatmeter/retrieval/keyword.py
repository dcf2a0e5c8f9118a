"""Keyword search over an assistant's passages: FTS5 bm25 on SQLite, full-text on PostgreSQL.

A visitor's question is natural language, so its words are OR-ed: a passage
matching more (and rarer) words ranks higher, none is required.

SQLite's FTS5 table holds every assistant's passages. Ranking the matches and
only then keeping the assistant's would look up every matching row in
``chunks`` (100,000 passages: 6,000 matches and 20 ms for a typical question),
so the best matches of the whole table are ranked first, and the assistant's
kept from those; only when too few of them are the assistant's does the
search rank all of the assistant's matches. Both give the same passages in
the same order.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.orm import Session

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 32
WIDER = 4  # SQLite: rank this many times ``limit`` matches of the whole table first
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


def search(session: Session, *, assistant_id: int, question: str, limit: int) -> list[int]:
    """Chunk ids, best match first."""
    words = terms(question)
    if not words:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _postgres_search(session, assistant_id, " | ".join(words), limit)
    return _sqlite_search(session, assistant_id, " OR ".join(f'"{w}"' for w in words), limit)


def _postgres_search(session: Session, assistant_id: int, query: str, limit: int) -> list[int]:
    # The plan (EXPLAIN ANALYZE, 10,000 and 100,000 passages): a bitmap scan of
    # the GIN index, the matching rows' stored tsvectors ranked, a top-N
    # heapsort; a sequential scan when the words match a large share of rows.
    rows = session.execute(
        text(
            "SELECT id FROM chunks, to_tsquery('english', :query) AS query "
            "WHERE assistant_id = :assistant AND search_vector @@ query "
            "ORDER BY ts_rank_cd(search_vector, query) DESC, id LIMIT :limit"
        ),
        {"query": query, "assistant": assistant_id, "limit": limit},
    )
    return [row[0] for row in rows]


def _sqlite_search(session: Session, assistant_id: int, match: str, limit: int) -> list[int]:
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
