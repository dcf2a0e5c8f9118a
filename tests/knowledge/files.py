"""Real files for the extraction tests, made with the libraries that write them.

PDFs come from reportlab (and pypdf, to encrypt one), DOCX from python-docx,
images from Pillow: what a customer's software would produce, not hand-made bytes.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Sequence

import docx
from PIL import Image
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

Section = tuple[str | None, Sequence[str]]  # a bookmarked heading (or None), its lines


def pdf(pages: Sequence[Sequence[Section]], *, title: str | None = None) -> bytes:
    """A text PDF: each page a list of (heading, lines); headings are also bookmarks."""
    buffer = io.BytesIO()
    document = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    if title:
        document.setTitle(title)
    _, height = A4
    bookmark = 0
    for page in pages:
        y = height - 60
        for heading, lines in page:
            if heading:
                key = f"b{bookmark}"
                bookmark += 1
                document.bookmarkHorizontal(key, 0, y + 20)
                document.addOutlineEntry(heading, key, level=0)
                document.setFont("Helvetica-Bold", 14)
                document.drawString(50, y, heading)
                y -= 24
            document.setFont("Helvetica", 10)
            for line in lines:
                document.drawString(50, y, line)
                y -= 14
            y -= 10
        document.showPage()
    document.save()
    return buffer.getvalue()


def image_only_pdf() -> bytes:
    """What a scanner makes: a page that is one picture, with no text layer."""
    picture = Image.new("RGB", (400, 200), "white")
    for x in range(50, 350):  # a dark bar where the "text" would be
        for y in range(90, 110):
            picture.putpixel((x, y), (0, 0, 0))
    buffer = io.BytesIO()
    document = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    document.drawImage(ImageReader(picture), 50, 500, width=400, height=200)
    document.showPage()
    document.save()
    return buffer.getvalue()


def encrypted_pdf(source: bytes, *, password: str = "s3cret") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(source)))
    # RC4 needs no crypto library; the reader's behaviour is the same for AES.
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def word(*, title: str | None = None) -> bytes:
    """A DOCX with a Title, nested headings, body text and a table."""
    document = docx.Document()
    if title:
        document.core_properties.title = title
    document.add_paragraph("Chatmeter Handbook", style="Title")
    document.add_paragraph("Welcome to the handbook.")
    document.add_heading("Billing", level=1)
    document.add_paragraph("Tokens are bought in packages.")
    document.add_heading("Packages", level=2)
    document.add_paragraph("One package holds 50,000 tokens.")
    document.add_paragraph("Packages never expire.")
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(
        table.rows, [("Plan", "Tokens"), ("Starter", "50,000"), ("Pro", "500,000")], strict=True
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_heading("Support", level=1)
    document.add_paragraph("Write to support by email.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def word_with_media(media: bytes) -> bytes:
    """A real DOCX with an extra member, as an embedded file would be, compressed."""
    source = zipfile.ZipFile(io.BytesIO(word()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item, source.read(item.filename))
        target.writestr("word/media/blob.bin", media)
    return buffer.getvalue()


def declare_size(archive: bytes, member: str, size: int) -> bytes:
    """The archive with ``member``'s uncompressed size in the central directory set to ``size``."""
    data = bytearray(archive)
    position = 0
    name = member.encode()
    while (position := data.find(b"PK\x01\x02", position)) != -1:
        name_length = struct.unpack_from("<H", data, position + 28)[0]
        if data[position + 46 : position + 46 + name_length] == name:
            struct.pack_into("<I", data, position + 24, size)
            return bytes(data)
        position += 4
    raise LookupError(member)
