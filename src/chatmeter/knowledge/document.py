"""What extraction produces: pages of text, each cut into blocks under their headings.

Every format is reduced to this shape, so chunking and citations need to know
nothing about PDF, DOCX or HTML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Format = Literal["pdf", "docx", "txt", "markdown", "html", "csv"]

MAX_HEADING_DEPTH = 6


class Block(NamedTuple):
    """Text in reading order, with the headings it sits under (outermost first)."""

    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a PDF; the whole text of a format that has no pages (number 1)."""

    number: int
    text: str
    blocks: list[Block]


@dataclass(frozen=True, slots=True)
class Document:
    format: Format
    title: str
    pages: list[Page]

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages if page.text)


@dataclass(slots=True)
class PageBuilder:
    """Collects headings and paragraphs in reading order and files them into blocks.

    Consecutive paragraphs under the same headings become one block, so a
    block is a heading's section (or the part of it on one page).
    """

    path: list[tuple[int, str]] = field(default_factory=list)
    # (heading path, paragraphs): joined only at the end, as a CSV can have 100,000 rows.
    sections: list[tuple[tuple[str, ...], list[str]]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)  # headings and paragraphs, for Page.text

    @property
    def heading_path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.path)

    def heading(self, text: str, *, level: int) -> None:
        text = " ".join(text.split())
        if not text:
            return
        # A heading closes every open section at its level or deeper.
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        if len(self.path) >= MAX_HEADING_DEPTH:
            self.path.pop()
        self.path.append((level, text))
        self.parts.append(text)

    def paragraph(self, text: str) -> None:
        text = clean_text(text)
        if not text:
            return
        self.parts.append(text)
        path = self.heading_path
        if self.sections and self.sections[-1][0] == path:
            self.sections[-1][1].append(text)
        else:
            self.sections.append((path, [text]))

    def page(self, number: int = 1) -> Page:
        blocks = [Block(path, "\n\n".join(paragraphs)) for path, paragraphs in self.sections]
        return Page(number=number, text="\n\n".join(self.parts), blocks=blocks)


def render_row(headers: Sequence[str], values: Sequence[str]) -> str:
    """A table row as ``Header: value; Header: value``, readable on its own.

    Empty values are left out; values past the last header get ``Column N``.
    """
    cells = []
    for position, value in enumerate(values):
        value = " ".join(value.split())
        if not value:
            continue
        header = headers[position] if position < len(headers) else ""
        header = " ".join(header.split()) or f"Column {position + 1}"
        cells.append(f"{header}: {value}")
    return "; ".join(cells)


# Characters that carry no text: C0/C1 controls (but tab and newline), BOMs,
# soft hyphens and non-characters. Form feeds and Unicode separators mean a break.
_INVISIBLE = dict.fromkeys(
    [
        *range(0x00, 0x09),
        0x0B,
        *range(0x0E, 0x20),
        *range(0x7F, 0xA0),
        0xAD,
        0xFEFF,
        0xFFFE,
        0xFFFF,
        0x200B,
    ],
    None,
)
_INVISIBLE.update({0x0C: "\n", 0x2028: "\n", 0x2029: "\n\n", 0xA0: " ", 0x202F: " "})
_SPACES_INSIDE_LINE = re.compile(r"(?<=\S)[ \t]{2,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Plain newlines, no invisible characters, no runs of spaces or blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE)
    text = _SPACES_INSIDE_LINE.sub(" ", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def title_from_filename(filename: str) -> str:
    """``Annual Report.pdf`` (or ``C:\\docs\\Annual Report.pdf``) -> ``Annual Report``."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    stem, dot, _ = name.rpartition(".")
    return (stem if dot and stem else name) or "Untitled"


def extension(filename: str) -> str:
    """The lower-case extension with its dot, or ``""``."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    return f".{suffix.lower().strip()}" if dot and stem else ""
