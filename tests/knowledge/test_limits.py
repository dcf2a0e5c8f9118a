"""Caps on what one file may cost to read: unpacked size, pages and passages.

Each cap refuses the file with an explanation the customer can act on, before
the expensive work: a DOCX is weighed before it is unpacked, a PDF's pages are
counted before their text is read, and chunking stops at the first passage too many.
"""

from __future__ import annotations

import os

import pytest

from chatmeter.knowledge.chunking import chunk
from chatmeter.knowledge.embeddings import MiniLMEmbedder
from chatmeter.knowledge.extract import FileTooLarge, ZipBomb, extract
from chatmeter.knowledge.formats import word as word_format
from chatmeter.knowledge.limits import ExtractionLimits
from tests.knowledge import files

DEFAULTS = ExtractionLimits()


def test_a_docx_that_unpacks_past_the_default_limit_is_refused_before_it_is_opened() -> None:
    # 1 MB of noise that claims 100 MB unpacked: a 100x ratio, which alone passes,
    # but more than a text document ever holds.
    data = files.declare_size(
        files.word_with_media(os.urandom(1024 * 1024)), "word/media/blob.bin", 100_000_000
    )
    with pytest.raises(ZipBomb) as caught:
        word_format.check_archive(data, max_unpacked_bytes=DEFAULTS.max_unpacked_bytes)
    assert caught.value.reason == "zip_bomb"
    assert "unpack" in caught.value.message


def test_the_unpacked_limit_is_the_operators_to_set() -> None:
    data = files.word_with_media(os.urandom(3 * 1024 * 1024))  # incompressible: ratio 1
    assert "Support" in extract(data, filename="a.docx", max_bytes=10**8).text
    with pytest.raises(ZipBomb):
        extract(data, filename="a.docx", max_bytes=10**8, max_unpacked_bytes=2 * 1024 * 1024)


def test_a_pdf_with_more_pages_than_allowed_is_refused_with_its_count() -> None:
    data = files.pdf([[(None, [f"Page {n} text."])] for n in range(5)])
    assert len(extract(data, filename="five.pdf", max_bytes=10**7, max_pages=5).pages) == 5
    with pytest.raises(FileTooLarge) as caught:
        extract(data, filename="five.pdf", max_bytes=10**7, max_pages=4)
    assert caught.value.reason == "too_large"
    assert "5 pages" in caught.value.message and "4 pages" in caught.value.message
    assert "Split" in caught.value.message


def test_the_page_limit_has_a_sane_default() -> None:
    assert 100 <= DEFAULTS.max_pages <= 5000


def test_chunking_stops_at_the_first_passage_over_the_limit(embedder: MiniLMEmbedder) -> None:
    text = "\n\n".join(
        f"Paragraph {n} explains how order number {n} was packed and shipped. " * 12
        for n in range(10)
    )
    document = extract(text.encode(), filename="orders.txt", max_bytes=10**7)
    everything = chunk(document, count_tokens=embedder.count_tokens)
    assert len(everything) == 10
    assert chunk(document, count_tokens=embedder.count_tokens, max_chunks=10) == everything
    seen: list[str] = []

    def counting(text: str) -> int:
        seen.append(text)
        return embedder.count_tokens(text)

    with pytest.raises(FileTooLarge) as caught:
        chunk(document, count_tokens=counting, max_chunks=3)
    assert caught.value.reason == "too_large"
    assert "more than 3 passages" in caught.value.message
    assert not any("Paragraph 5 " in text for text in seen)  # it stopped early
