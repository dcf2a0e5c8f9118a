"""A passage's sentences, and their embeddings as training stores them with the passage.

Grounding (``answers.grounding``) scores every sentence of the retrieved passages
against the visitor's question, so each needs its embedding. Embedding them during
the turn cost 0.4–0.7 s the first time a web process saw a passage (the turn's
slowest part, once per passage and process); training now embeds them once, beside
the passage's own vector, and stores them with it (``Chunk.sentence_vectors``).

The stored form, ``pack``: an 8-byte digest of the sentences' texts, then their
vectors (float16, little-endian, one row each, in order: half the bytes of float32,
and a cosine within about 1e-4 of it for these unit vectors of 384 dimensions).
``unpack`` gives them back only if the passage still splits into exactly those
sentences: when the rules below change, or a passage was trained before sentences were
stored, the turn embeds the sentences itself, as it always did. A stored vector is
never used for another text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

MIN_SENTENCE_CHARS = 12
MAX_SENTENCE_CHARS = 600
MAX_TERM_CHARS = 40  # a paragraph this short, without a full stop, names what follows
DIGEST_BYTES = 8

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[`*]?[A-Z0-9])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")


def split(text: str) -> list[str]:
    """The passage's sentences: list items and paragraphs split at sentence ends; wrapped
    lines joined; a term on a line of its own joined to the paragraph it names ("Jython:
    Python implemented in Java."); headings and fragments left out, and a very long
    sentence cut to ``MAX_SENTENCE_CHARS``."""
    found = []
    for unit in _units(text):
        for piece in _SENTENCE_END.split(unit):
            sentence = piece.strip()
            if len(sentence) < MIN_SENTENCE_CHARS or not re.search(r"[^\W\d_]{2}", sentence):
                continue
            found.append(sentence[:MAX_SENTENCE_CHARS])
    return found


def _units(text: str) -> list[str]:
    """Paragraphs and list items, each on one line; a term before its paragraph joined to it."""
    units: list[str] = []
    current: list[str] = []
    term = ""  # a short paragraph just closed, that may name the next one
    item = False  # whether ``current`` is a list item

    def close() -> None:
        nonlocal term
        if not current:
            return
        unit = " ".join(current)
        current.clear()
        if term and not item:
            units[-1] = f"{term}: {unit}"
            term = ""
            return
        units.append(unit)
        short = len(unit) <= MAX_TERM_CHARS and not re.search(r"[.!?:;,]$", unit)
        term = unit if short and not item else ""

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            close()
            continue
        if _HEADING.match(line):
            close()
            term = ""
            continue
        if _LIST_ITEM.match(line):
            close()
            term, item = "", True
            current.append(_LIST_ITEM.sub("", line).strip())
            continue
        if not current:
            item = False
        current.append(stripped)
    close()
    return units


def digest(sentences: Sequence[str]) -> bytes:
    """Which sentences a stored block of vectors belongs to."""
    hashed = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for sentence in sentences:
        hashed.update(len(sentence.encode()).to_bytes(4, "little"))
        hashed.update(sentence.encode())
    return hashed.digest()


def pack(sentences: Sequence[str], vectors: npt.NDArray[np.float32]) -> bytes:
    """``sentences``' vectors (one row each) as ``Chunk.sentence_vectors`` stores them."""
    rows = np.ascontiguousarray(vectors, dtype="<f2")
    if rows.ndim != 2 or rows.shape[0] != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but vectors of shape {rows.shape}")
    return digest(sentences) + rows.tobytes()


def unpack(stored: bytes | None, sentences: Sequence[str]) -> npt.NDArray[np.float32] | None:
    """The stored vectors of ``sentences`` (one row each), or None if ``stored`` is not
    theirs: nothing stored, or other sentences."""
    size = len(stored) - DIGEST_BYTES if stored else 0
    if not stored or not sentences or size <= 0 or size % (2 * len(sentences)):
        return None
    if stored[:DIGEST_BYTES] != digest(sentences):
        return None
    rows = np.frombuffer(stored, dtype="<f2", offset=DIGEST_BYTES)
    return rows.reshape(len(sentences), -1).astype(np.float32)
