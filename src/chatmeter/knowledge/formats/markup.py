"""HTML: the text a visitor reads, under its h1–h6 headings; no scripts, styles or menus.

Built on the standard library's ``html.parser``: it streams events instead of
building a tree, so deeply nested or malformed pages cost neither recursion
nor a dependency. Tables become ``Header: value`` rows, like CSV.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from chatmeter.knowledge.document import Document, PageBuilder, render_row

# Not content: code, styling, navigation menus and embedded media. (<head> is
# not skipped as a whole: its end tag is optional, and it holds no other text.)
SKIPPED = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "svg",
        "math",
        "iframe",
        "object",
        "canvas",
        "select",
        "button",
    }
)
VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "ul",
        "caption",
        "body",
        "html",
    }
)
HEADINGS = {f"h{level}": level for level in range(1, 7)}
_WHITESPACE = re.compile(r"\s+")


def read_html(text: str, *, title: str) -> Document:
    parser = _Reader()
    parser.feed(text)
    parser.close()
    parser.finish()
    page_title = " ".join("".join(parser.title).split())
    first_h1 = next((h for level, h in parser.headings if level == 1), None)
    return Document(
        format="html", title=page_title or first_h1 or title, pages=[parser.builder.page()]
    )


class _Table:
    __slots__ = ("cell", "header_row", "in_row", "row", "rows")

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.row: list[str] = []
        self.cell: list[str] | None = None
        self.in_row = False
        self.header_row = True  # the first row is a header if all its cells are <th>


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = PageBuilder()
        self.headings: list[tuple[int, str]] = []
        self.title: list[str] = []
        self._skipping: list[str] = []  # open elements whose content is dropped
        self._in_title = False
        self._heading: tuple[int, list[str]] | None = None
        self._text: list[str] = []
        self._pre = 0
        self._tables: list[_Table] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._skipping:  # not an <svg>'s <title>
            self._in_title = True
            return
        if self._skipping:
            if tag not in VOID:  # so that a nested </div> doesn't end a hidden <div>
                self._skipping.append(tag)
            return
        hidden = any(
            name == "hidden" or (name == "aria-hidden" and value == "true") for name, value in attrs
        )
        if (tag in SKIPPED or hidden) and tag not in VOID:
            self._skipping.append(tag)
            return
        if self._heading is not None and (tag in BLOCKS or tag in HEADINGS or tag == "table"):
            self._end_heading()  # an unclosed heading ends where the next block begins
        if tag in HEADINGS:
            self._flush()
            self._heading = (HEADINGS[tag], [])
        elif tag == "br":
            self._write("\n", verbatim=True)
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag == "table":
            self._flush()
            self._tables.append(_Table())
        elif tag == "tr" and self._tables:
            self._end_row()
            self._tables[-1].in_row = True
        elif tag in ("td", "th") and self._tables:
            table = self._tables[-1]
            self._end_cell()
            table.in_row = True
            table.cell = []
            if tag == "td" and not table.rows:
                table.header_row = False
        elif tag in BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            return
        if self._skipping:
            if tag in self._skipping:  # also closes anything left open inside it
                while self._skipping.pop() != tag:
                    pass
            return
        if tag in HEADINGS and self._heading is not None:
            self._end_heading()
        elif tag == "pre":
            self._flush()
            self._pre = max(self._pre - 1, 0)
        elif tag == "table" and self._tables:
            self._end_row()
            table = self._tables.pop()
            self._emit_table(table)
        elif tag == "tr" and self._tables:
            self._end_row()
        elif tag in ("td", "th") and self._tables:
            self._end_cell()
        elif tag in BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._skipping:
            self._write(data)

    def finish(self) -> None:
        if self._heading is not None:
            self._end_heading()
        while self._tables:
            self._end_row()
            self._emit_table(self._tables.pop())
        self._flush()

    def _end_heading(self) -> None:
        assert self._heading is not None
        level, parts = self._heading
        self._heading = None
        heading = " ".join("".join(parts).split())
        self.builder.heading(heading, level=level)
        if heading:
            self.headings.append((level, heading))

    def _write(self, data: str, *, verbatim: bool = False) -> None:
        if not (verbatim or self._pre):  # in the source, a line break is just a space
            data = _WHITESPACE.sub(" ", data)
        if self._heading is not None:
            self._heading[1].append(data)
        elif self._tables and self._tables[-1].cell is not None:
            self._tables[-1].cell.append(data)
        else:
            self._text.append(data)

    def _flush(self) -> None:
        text = "".join(self._text)
        self._text.clear()
        if not self._pre:
            text = "\n".join(line.strip() for line in text.split("\n"))
        self.builder.paragraph(text)

    def _end_cell(self) -> None:
        table = self._tables[-1]
        if table.cell is not None:
            table.row.append(" ".join("".join(table.cell).split()))
            table.cell = None

    def _end_row(self) -> None:
        table = self._tables[-1]
        self._end_cell()
        if table.in_row and any(table.row):
            table.rows.append(table.row)
        table.row = []
        table.in_row = False

    def _emit_table(self, table: _Table) -> None:
        rows = table.rows
        if table.header_row and len(rows) > 1:
            for row in rows[1:]:
                self.builder.paragraph(render_row(rows[0], row))
        else:
            for row in rows:
                self.builder.paragraph("; ".join(cell for cell in row if cell))
