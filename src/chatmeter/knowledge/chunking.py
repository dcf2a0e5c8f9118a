"""A document cut into passages that fit the embedding model: ``chunk(document, count_tokens=)``.

What is embedded is the passage under its heading path, one line::

    Billing › Buying tokens
    One package holds 50,000 tokens...

so a passage that never names its subject ("It costs €20.") is still found by
it. ``Chunk.embedding_text`` is that string and ``Chunk.tokens`` its length in
the model's tokens, special tokens included; it is never more than
``max_tokens``. The default of 200 leaves all-MiniLM-L6-v2's 256-token window
room for a tokenizer that counts differently from ours.

A chunk holds one heading section, or a part of one, on one page: a section
that fits is never cut; a longer one is cut at paragraph, then sentence, line
and word boundaries, with about ``overlap_tokens`` repeated from one part to
the next so that a sentence cut in two is whole in one of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from chatmeter.knowledge.document import Document
from chatmeter.knowledge.errors import FileTooLarge
from chatmeter.knowledge.splitting import split

HEADING_SEPARATOR = " › "
MIN_TEXT_TOKENS = 16  # max_tokens must leave at least this much room for text


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int  # position in the document, from 0
    page: int
    heading_path: tuple[str, ...]  # may be shortened, see _fit_headings
    text: str  # the passage as the customer wrote it: what is cited and quoted
    tokens: int  # count_tokens(embedding_text)

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.heading_path, self.text)


class Section(NamedTuple):
    page: int
    heading_path: tuple[str, ...]
    text: str


def embedding_text(heading_path: tuple[str, ...], text: str) -> str:
    """The passage as the model sees it: its heading path on a line, then the text."""
    if not heading_path:
        return text
    return f"{HEADING_SEPARATOR.join(heading_path)}\n{text}"


def sections(document: Document) -> Iterator[Section]:
    """Consecutive blocks of a page under the same headings, joined by blank lines."""
    for page in document.pages:
        path: tuple[str, ...] | None = None
        texts: list[str] = []
        for block in page.blocks:
            text = block.text.strip()
            if not text:
                continue
            if block.heading_path != path and texts:
                yield Section(page.number, path or (), "\n\n".join(texts))
                texts = []
            path = block.heading_path
            texts.append(text)
        if texts:
            yield Section(page.number, path or (), "\n\n".join(texts))


def chunk(
    document: Document,
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int = 200,
    overlap_tokens: int = 30,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """The document's passages in reading order, each fitting ``max_tokens`` with its headings.

    With ``max_chunks``, a document that makes more passages raises ``FileTooLarge``
    as soon as it is one over, without counting the tokens of the rest.
    """
    empty = count_tokens("")  # what the tokenizer adds to any text: [CLS] and [SEP]
    if max_tokens - empty < MIN_TEXT_TOKENS:
        raise ValueError(f"max_tokens must be at least {empty + MIN_TEXT_TOKENS}")
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ValueError("overlap_tokens must be between 0 and half of max_tokens")
    weights: dict[str, int] = {}

    def weigh(word: str) -> int:
        weight = weights.get(word)
        if weight is None:
            weight = weights[word] = max(count_tokens(word) - empty, 0)
        return weight

    chunks: list[Chunk] = []
    for section in sections(document):
        path = _fit_headings(
            section.heading_path, count_tokens=count_tokens, limit=empty + max_tokens // 4
        )
        spans = split(
            section.text,
            measure=functools.partial(_measure, count_tokens, path),
            limit=max_tokens,
            weigh=weigh,
            overlap=overlap_tokens,
            max_spans=None if max_chunks is None else max_chunks - len(chunks) + 1,
        )
        for span in spans:
            if max_chunks is not None and len(chunks) >= max_chunks:
                raise FileTooLarge.passages(limit=max_chunks)
            chunks.append(
                Chunk(
                    index=len(chunks),
                    page=section.page,
                    heading_path=path,
                    text=section.text[span.start : span.end],
                    tokens=span.tokens,
                )
            )
    return chunks


def _measure(count_tokens: Callable[[str], int], path: tuple[str, ...], text: str) -> int:
    """The tokens ``text`` takes when embedded under its headings."""
    return count_tokens(embedding_text(path, text))


def _fit_headings(
    path: tuple[str, ...], *, count_tokens: Callable[[str], int], limit: int
) -> tuple[str, ...]:
    """The heading path, shortened to ``limit`` tokens so that text keeps most of the room.

    Outer headings go first, since the innermost says most about the passage;
    a single heading still too long (often a paragraph styled as a heading) is
    cut at a word and marked with an ellipsis.
    """

    def cost(candidate: tuple[str, ...]) -> int:
        return count_tokens(HEADING_SEPARATOR.join(candidate))

    while len(path) > 1 and cost(path) > limit:
        path = path[1:]
    if not path or cost(path) <= limit:
        return path
    words = path[0].split()
    low, high = 0, len(words)  # the most words that fit with the ellipsis
    while low < high:
        middle = (low + high + 1) // 2
        if cost((" ".join(words[:middle]) + " …",)) <= limit:
            low = middle
        else:
            high = middle - 1
    return (" ".join(words[:low]) + " …",) if low else ()
