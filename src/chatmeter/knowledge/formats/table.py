"""CSV: each row becomes ``Header: value; Header: value``, a passage that stands alone.

A row cut from its header row means nothing to a reader or to the retriever
("42; yes; 2024"), so every row carries its column names. Rows are separated
by blank lines, so the chunker cuts between rows before it cuts inside one.
"""

from __future__ import annotations

import csv
import io

from chatmeter.knowledge.document import Document, PageBuilder, render_row
from chatmeter.knowledge.errors import CorruptFile, EmptyFile

DELIMITERS = (",", "\t", ";", "|")
SAMPLE_ROWS = 50
MAX_HEADER_LENGTH = 40


def detect_delimiter(text: str, *, min_rows: int = 2) -> str | None:
    """The delimiter that gives every sampled row the same number (2+) of columns."""
    lines = [line for line in text.splitlines()[: SAMPLE_ROWS + 1] if line.strip()]
    # The sample may end inside a quoted field, so its last line is not judged.
    sample = "\n".join(lines[:-1] if len(lines) > SAMPLE_ROWS else lines)
    for delimiter in DELIMITERS:
        if delimiter not in sample:
            continue
        try:
            widths = [
                len(row) for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if row
            ]
        except csv.Error:
            continue
        if len(widths) >= min_rows and len(set(widths)) == 1 and widths[0] >= 2:
            return delimiter
    return None


def looks_like_csv(text: str) -> bool:
    """Without a .csv name to go by: regular columns under a row of short, named headers."""
    delimiter = detect_delimiter(text, min_rows=3)
    if delimiter is None:
        return False
    header = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    return all(0 < len(cell.strip()) <= MAX_HEADER_LENGTH for cell in header)


def read_csv(text: str, *, title: str) -> Document:
    delimiter = detect_delimiter(text) or ","
    try:
        rows = [
            row
            for row in csv.reader(io.StringIO(text), delimiter=delimiter)
            if any(cell.strip() for cell in row)
        ]
    except csv.Error as exc:  # a cell over the csv module's size limit, or a stray NUL
        raise CorruptFile.of("CSV") from exc
    if len(rows) < 2:
        raise EmptyFile("This CSV file has no rows under its header row: nothing to learn from.")
    headers, body = rows[0], rows[1:]
    builder = PageBuilder()
    for row in body:
        builder.paragraph(render_row(headers, row))
    return Document(format="csv", title=title, pages=[builder.page()])
