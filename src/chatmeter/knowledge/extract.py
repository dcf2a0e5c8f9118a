"""Uploaded bytes to text: ``extract(data, filename=, max_bytes=) -> Document``.

The format is sniffed from the content (``sniff``); the reader for it fills a
``Document``. Anything that stops a file from being learned from raises an
``ExtractionError`` whose ``reason`` and ``message`` the customer sees. The
caps on what a file may unpack to and how many pages it may have default to
``ExtractionLimits``; the training job passes the operator's settings.
"""

from __future__ import annotations

from chatmeter.knowledge.document import Block, Document, Format, Page, title_from_filename
from chatmeter.knowledge.errors import (
    SUPPORTED_FORMATS,
    CorruptFile,
    EmptyFile,
    EncryptedFile,
    ExtractionError,
    FileTooLarge,
    NoTextLayer,
    TooSlow,
    UnsupportedFormat,
    ZipBomb,
)
from chatmeter.knowledge.formats.markdown import read_markdown
from chatmeter.knowledge.formats.markup import read_html
from chatmeter.knowledge.formats.plain import read_plain
from chatmeter.knowledge.formats.table import read_csv
from chatmeter.knowledge.limits import ExtractionLimits
from chatmeter.knowledge.sniff import sniff

_DEFAULTS = ExtractionLimits()

__all__ = [
    "SUPPORTED_FORMATS",
    "Block",
    "CorruptFile",
    "Document",
    "EmptyFile",
    "EncryptedFile",
    "ExtractionError",
    "FileTooLarge",
    "Format",
    "NoTextLayer",
    "Page",
    "TooSlow",
    "UnsupportedFormat",
    "ZipBomb",
    "extract",
]

_TEXT_READERS = {"txt": read_plain, "markdown": read_markdown, "html": read_html, "csv": read_csv}


def extract(
    data: bytes,
    *,
    filename: str,
    max_bytes: int,
    max_unpacked_bytes: int = _DEFAULTS.max_unpacked_bytes,
    max_pages: int = _DEFAULTS.max_pages,
) -> Document:
    """The file's text in pages and heading blocks, or an ``ExtractionError`` saying why not."""
    if len(data) > max_bytes:
        raise FileTooLarge.of(size=len(data), limit=max_bytes)
    if not data.strip():
        raise EmptyFile()
    title = title_from_filename(filename)
    found = sniff(data, filename=filename)
    if found.format == "pdf":
        from chatmeter.knowledge.formats.pdf import read_pdf  # PDFium loads only when needed

        document = read_pdf(data, title=title, max_pages=max_pages)
    elif found.format == "docx":
        from chatmeter.knowledge.formats.word import read_docx

        document = read_docx(data, title=title, max_unpacked_bytes=max_unpacked_bytes)
    else:
        assert found.text is not None
        document = _TEXT_READERS[found.format](found.text, title=title)
    if not any(block.text for page in document.pages for block in page.blocks):
        raise EmptyFile()
    return document
