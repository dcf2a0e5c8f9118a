"""Uploaded bytes to text: ``extract(data, filename=, max_bytes=) -> Document``.

The format is sniffed from the content (``sniff``); the reader for it fills a
``Document``. Anything that stops a file from being learned from raises an
``ExtractionError`` whose ``reason`` and ``message`` the customer sees.
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
    UnsupportedFormat,
    ZipBomb,
)
from chatmeter.knowledge.formats.markdown import read_markdown
from chatmeter.knowledge.formats.markup import read_html
from chatmeter.knowledge.formats.plain import read_plain
from chatmeter.knowledge.formats.table import read_csv
from chatmeter.knowledge.sniff import sniff

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
    "UnsupportedFormat",
    "ZipBomb",
    "extract",
]

_TEXT_READERS = {"txt": read_plain, "markdown": read_markdown, "html": read_html, "csv": read_csv}


def extract(data: bytes, *, filename: str, max_bytes: int) -> Document:
    """The file's text in pages and heading blocks, or an ``ExtractionError`` saying why not."""
    if len(data) > max_bytes:
        raise FileTooLarge.of(size=len(data), limit=max_bytes)
    if not data.strip():
        raise EmptyFile()
    title = title_from_filename(filename)
    found = sniff(data, filename=filename)
    if found.format == "pdf":
        from chatmeter.knowledge.formats.pdf import read_pdf  # PDFium loads only when needed

        document = read_pdf(data, title=title)
    elif found.format == "docx":
        from chatmeter.knowledge.formats.word import read_docx

        document = read_docx(data, title=title)
    else:
        assert found.text is not None
        document = _TEXT_READERS[found.format](found.text, title=title)
    if not any(block.text for page in document.pages for block in page.blocks):
        raise EmptyFile()
    return document
