"""PDF text with PDFium (pypdfium2, Apache-2.0 / BSD-3): one ``Page`` per page.

PDFs carry no reliable notion of a heading, so the heading path comes from the
document's bookmarks (its outline) where it has them: a bookmark applies from
where its title appears on its page, or from the top of that page.
"""

from __future__ import annotations

import itertools
import re
import threading
import unicodedata
from collections.abc import Iterable

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from chatmeter.knowledge.document import MAX_HEADING_DEPTH, Block, Document, Page, clean_text
from chatmeter.knowledge.errors import CorruptFile, EncryptedFile, FileTooLarge, NoTextLayer
from chatmeter.knowledge.limits import ExtractionLimits

MAX_BOOKMARKS = 5_000
_PLACEHOLDER_TITLES = frozenset({"", "untitled", "(anonymous)"})
# PDFium marks a word broken across lines with a hyphen character of its own.
_BROKEN_WORD = re.compile(r"[\x02\u00ad]\r?\n")

# PDFium is not thread-safe: a process reads one PDF at a time.
_PDFIUM = threading.Lock()

Bookmark = tuple[int, int, str]  # page index, nesting level, title


def read_pdf(data: bytes, *, title: str, max_pages: int = ExtractionLimits().max_pages) -> Document:
    """The PDF's text, page by page; its pages are counted before any text is read."""
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
                raise EncryptedFile() from exc
            raise CorruptFile.of("PDF") from exc
        try:
            if len(pdf) > max_pages:
                raise FileTooLarge.pages(count=len(pdf), limit=max_pages)
            texts = [_page_text(pdf, index) for index in range(len(pdf))]
            metadata_title = (pdf.get_metadata_value("Title") or "").strip()
            bookmarks = _bookmarks(pdf)
        finally:
            pdf.close()
    if all(text is None for text in texts):
        raise CorruptFile.of("PDF")
    pages = _pages([text or "" for text in texts], bookmarks)
    if not any(page.text for page in pages):
        raise NoTextLayer()
    if metadata_title.lower() in _PLACEHOLDER_TITLES:
        metadata_title = ""
    return Document(format="pdf", title=metadata_title or title, pages=pages)


def _page_text(pdf: pdfium.PdfDocument, index: int) -> str | None:
    """The page's text, "" when it has none, None when the page can't be read."""
    try:
        page = pdf[index]
    except pdfium.PdfiumError:
        return None
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_bounded()
        finally:
            textpage.close()
    except pdfium.PdfiumError:
        return None
    finally:
        page.close()
    # NFKC undoes what typesetting did to the characters: ligatures (ﬁ), full-width forms.
    return clean_text(unicodedata.normalize("NFKC", _BROKEN_WORD.sub("", text)))


def _bookmarks(pdf: pdfium.PdfDocument) -> list[Bookmark]:
    found: list[Bookmark] = []
    try:
        for bookmark in itertools.islice(pdf.get_toc(max_depth=MAX_HEADING_DEPTH), MAX_BOOKMARKS):
            dest = bookmark.get_dest()
            index = dest.get_index() if dest is not None else None
            title = " ".join(bookmark.get_title().split())
            if index is not None and title:
                found.append((index, bookmark.level, title))
    except pdfium.PdfiumError:  # a broken outline costs the headings, not the text
        return []
    return sorted(found, key=lambda bookmark: bookmark[0])  # stable: outline order within a page


def _pages(texts: list[str], bookmarks: Iterable[Bookmark]) -> list[Page]:
    by_page: dict[int, list[Bookmark]] = {}
    for bookmark in bookmarks:
        by_page.setdefault(bookmark[0], []).append(bookmark)
    path: list[tuple[int, str]] = []
    pages = []
    for index, text in enumerate(texts):
        blocks: list[Block] = []
        cursor = 0
        for _, level, title in by_page.get(index, []):
            found = _find_title(text, title, start=cursor)
            if found is not None:
                _add(blocks, path, text[cursor : found[0]])
                cursor = found[1]
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, title))
        _add(blocks, path, text[cursor:])
        pages.append(Page(number=index + 1, text=text, blocks=blocks))
    return pages


def _add(blocks: list[Block], path: list[tuple[int, str]], text: str) -> None:
    text = text.strip()
    if text:
        blocks.append(Block(tuple(title for _, title in path), text))


def _find_title(text: str, title: str, *, start: int) -> tuple[int, int] | None:
    """Where the bookmark's title starts a line of the page, numbering, spaces and case aside."""
    words = [re.escape(word) for word in unicodedata.normalize("NFKC", title).split()]
    if not words:
        return None
    pattern = r"^[ \t]*(?:[\d.]+[ \t]+)?" + r"\s+".join(words)
    match = re.compile(pattern, re.IGNORECASE | re.MULTILINE).search(text, start)
    return (match.start(), match.end()) if match else None
