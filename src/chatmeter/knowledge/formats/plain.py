"""Plain text: one page, one block, no headings."""

from __future__ import annotations

from chatmeter.knowledge.document import Document, PageBuilder


def read_plain(text: str, *, title: str) -> Document:
    builder = PageBuilder()
    builder.paragraph(text)
    return Document(format="txt", title=title, pages=[builder.page()])
