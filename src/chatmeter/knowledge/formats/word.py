"""DOCX with python-docx: body paragraphs and tables in order, under their Heading styles.

A DOCX is a zip archive, so it is weighed before anything is unpacked: a
small upload must not expand into gigabytes in the worker's memory. What is
unpacked is built into a full XML tree (python-docx has no streaming reader),
so the unpacked size is capped by the operator's setting
(``CHATMETER_TRAINING_MAX_UNPACKED_BYTES``) and the training process's memory
limit stops the rest.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence

import docx
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from chatmeter.knowledge.document import Document, PageBuilder, render_row
from chatmeter.knowledge.errors import CorruptFile, ZipBomb
from chatmeter.knowledge.limits import ExtractionLimits

MAX_UNPACKED_BYTES = ExtractionLimits().max_unpacked_bytes
MAX_MEMBERS = 10_000
# XML compresses 5-20x; 100x is the line Apache POI draws for zip bombs. Small
# members are exempt: a 4 KB run of spaces legitimately compresses 1000x.
MAX_RATIO = 100
RATIO_EXEMPT_BYTES = 1024 * 1024

_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def check_archive(data: bytes, *, max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> None:
    """Raise ``ZipBomb`` if the archive claims an absurd size, before anything is unpacked.

    The sizes come from the central directory. They can't understate the
    truth: ``zipfile`` stops reading a member at its declared size and then
    fails its CRC check, so the declared sizes bound what python-docx can unpack.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptFile.of("Word (DOCX)") from exc
    if len(members) > MAX_MEMBERS:
        raise ZipBomb(members=len(members))
    unpacked = sum(member.file_size for member in members)
    packed = sum(member.compress_size for member in members)
    if unpacked > max_unpacked_bytes:
        raise ZipBomb.unpacked(size=unpacked, limit=max_unpacked_bytes)
    sizes = [(member.file_size, member.compress_size) for member in members]
    for size, compressed in [*sizes, (unpacked, packed)]:
        if size > RATIO_EXEMPT_BYTES and size > MAX_RATIO * max(compressed, 1):
            raise ZipBomb(unpacked=size, packed=compressed)


def read_docx(data: bytes, *, title: str, max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> Document:
    check_archive(data, max_unpacked_bytes=max_unpacked_bytes)
    try:
        word = docx.Document(io.BytesIO(data))
        properties_title = (word.core_properties.title or "").strip()
        items = list(word.iter_inner_content())
    except MemoryError:
        raise
    except Exception as exc:  # python-docx, lxml and zipfile each raise their own on bad input
        raise CorruptFile.of("Word (DOCX)") from exc
    builder = PageBuilder()
    styled_title: str | None = None
    first_heading: str | None = None
    for item in items:
        if isinstance(item, Table):
            _table(builder, item)
            continue
        level = heading_level(item)
        if level is None:
            builder.paragraph(item.text)
        elif level == 0:  # the "Title" style: the document's name, not a section
            styled_title = styled_title or " ".join(item.text.split()) or None
        else:
            builder.heading(item.text, level=level)
            first_heading = first_heading or " ".join(item.text.split()) or None
    return Document(
        format="docx",
        title=properties_title or styled_title or first_heading or title,
        pages=[builder.page()],
    )


def heading_level(paragraph: Paragraph) -> int | None:
    """1-9 for Heading styles (or styles based on them), 0 for Title, else None."""
    style = paragraph.style
    seen = 0
    while style is not None and seen < 10:  # base styles can loop in a hand-edited file
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        if match := _HEADING_STYLE.match(name):
            return int(match.group(1))
        style = style.base_style
        seen += 1
    return None


def _table(builder: PageBuilder, table: Table) -> None:
    rows = [_cells(row.cells) for row in table.rows]
    rows = [row for row in rows if any(row)]
    if len(rows) > 1:
        for row in rows[1:]:
            builder.paragraph(render_row(rows[0], row))
    elif rows:
        builder.paragraph("; ".join(cell for cell in rows[0] if cell))


def _cells(cells: Sequence[_Cell]) -> list[str]:
    # A merged cell is reported once per grid column it spans; keep it once.
    texts: list[str] = []
    previous = None
    for cell in cells:
        if previous is not None and cell._tc is previous._tc:
            continue
        texts.append(" ".join(cell.text.split()))
        previous = cell
    return texts
