"""Keyword search over an assistant's passages: FTS5 bm25 on SQLite, full-text on PostgreSQL.

A visitor's question is natural language, so its words are OR-ed: a passage
matching more (and rarer) words ranks higher, none is required.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.orm import Session

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 32
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
        rows = session.execute(
            text(
                "SELECT id FROM chunks, to_tsquery('english', :query) AS query "
                "WHERE assistant_id = :assistant AND search_vector @@ query "
                "ORDER BY ts_rank_cd(search_vector, query) DESC, id LIMIT :limit"
            ),
            {"query": " | ".join(words), "assistant": assistant_id, "limit": limit},
        )
    else:
        match = " OR ".join(f'"{w}"' for w in words)
        rows = session.execute(
            text(
                "SELECT chunks.id FROM chunks_fts JOIN chunks ON chunks.id = chunks_fts.rowid "
                "WHERE chunks_fts MATCH :match AND chunks.assistant_id = :assistant "
                "ORDER BY bm25(chunks_fts), chunks.id LIMIT :limit"
            ),
            {"match": match, "assistant": assistant_id, "limit": limit},
        )
    return [row[0] for row in rows]
