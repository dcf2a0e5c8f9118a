"""What a file really is, from its bytes; the file name only breaks ties.

Customers upload whatever their computer calls a document: a scan saved as
``.pdf`` that is really a PNG, a Word file renamed ``.txt``, a CSV exported in
Windows-1252. The bytes decide; the extension only chooses between text
formats that the content alone can't tell apart.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass

from chatmeter.knowledge.document import Format, extension
from chatmeter.knowledge.errors import CorruptFile, EncryptedFile, UnsupportedFormat
from chatmeter.knowledge.formats.markdown import looks_like_markdown
from chatmeter.knowledge.formats.table import looks_like_csv

SNIFF_BYTES = 64 * 1024  # enough to judge; decoding checks the whole file anyway

# What common non-document files start with, named for the customer.
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "Upload the document itself, not a picture of it."),
    (b"\xff\xd8\xff", "a JPEG image", "Upload the document itself, not a picture of it."),
    (b"GIF87a", "a GIF image", ""),
    (b"GIF89a", "a GIF image", ""),
    (b"II*\x00", "a TIFF image", ""),
    (b"MM\x00*", "a TIFF image", ""),
    (b"RIFF", "an audio, video or image file", ""),
    (b"ID3", "an MP3 audio file", ""),
    (b"\x1f\x8b", "a compressed (gzip) archive", "Unpack it and upload the files inside."),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "Unpack it and upload the files inside."),
    (b"Rar!", "a RAR archive", "Unpack it and upload the files inside."),
    (b"{\\rtf", "an RTF document", "Save it as DOCX or PDF and upload that."),
    (b"%!PS", "a PostScript file", "Save it as PDF and upload that."),
    (b"\x7fELF", "a program", ""),
)
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy Office files, and encrypted new ones
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_KINDS = (
    ("xl/workbook.xml", "an Excel workbook", "Save the sheet as CSV and upload that."),
    ("ppt/presentation.xml", "a PowerPoint presentation", "Save it as PDF and upload that."),
    ("content.xml", "an OpenDocument file", "Save it as DOCX or PDF and upload that."),
)

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose BOM it starts with
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
MAX_GARBAGE_SHARE = 0.01  # of characters that no text file contains

HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml", ".shtml"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mdx"})
CSV_EXTENSIONS = frozenset({".csv", ".tsv"})
_HTML_DOCUMENT = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_HTML_TAG = re.compile(
    r"</?(?:p|div|h[1-6]|span|a|ul|ol|li|table|br|section|article)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Sniffed:
    format: Format
    text: str | None = None  # the decoded text, for the text formats


def sniff(data: bytes, *, filename: str) -> Sniffed:
    """The file's format, or ``UnsupportedFormat`` naming what it is instead."""
    if _is_pdf(data):
        return Sniffed("pdf")
    if data.startswith(_ZIP):
        return _sniff_zip(data, filename=filename)
    if data.startswith(_OLE2):
        raise _ole2(data)
    for signature, what, advice in _SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedFormat.because(what, advice=advice)
    if data[4:8] == b"ftyp":
        raise UnsupportedFormat.because("a video or image file (MP4, MOV or HEIC)")
    text = decode_text(data)
    if text is None:
        raise UnsupportedFormat.because("a binary file of an unknown kind")
    return Sniffed(text_format(text, filename=filename), text)


def _is_pdf(data: bytes) -> bool:
    if data.lstrip()[:5] == b"%PDF-":
        return True
    # Readers accept the header anywhere in the first kilobyte, after binary junk;
    # a text file that merely mentions it is still text.
    return b"%PDF-" in data[:1024] and decode_text(data) is None


def _sniff_zip(data: bytes, *, filename: str) -> Sniffed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())  # the central directory only: nothing is unpacked
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        kind = "Word (DOCX)" if extension(filename) == ".docx" else "zip"
        raise CorruptFile.of(kind) from exc
    if "word/document.xml" in names:
        return Sniffed("docx")
    for member, what, advice in _ZIP_KINDS:
        if member in names:
            raise UnsupportedFormat.because(what, advice=advice)
    raise UnsupportedFormat.because(
        "a zip archive", advice="Unpack it and upload the files inside."
    )


def _ole2(data: bytes) -> Exception:
    # Password-protected DOCX/XLSX files are OLE2 containers holding an
    # "EncryptionInfo" stream; its name is stored in UTF-16.
    if "EncryptionInfo".encode("utf-16-le") in data:
        return EncryptedFile(
            "This Office file is protected by a password, so its text can't be read. "
            "Save a copy without the password and upload that."
        )
    return UnsupportedFormat.because(
        "an older Microsoft Office file (.doc, .xls or .ppt)",
        advice="Save it as DOCX (or the sheet as CSV) and upload that.",
    )


def decode_text(data: bytes) -> str | None:
    """The bytes as text, or None when they are not text in any encoding we accept."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _checked(data[len(bom) :], encoding)
    if b"\x00" in data[:SNIFF_BYTES]:
        utf16 = _utf16_without_bom(data[:SNIFF_BYTES])
        return _checked(data, utf16) if utf16 else None
    for encoding in ("utf-8", "cp1252"):  # Excel on Windows still exports cp1252 CSV
        text = _checked(data, encoding)
        if text is not None:
            return text
    return _checked(data, "latin-1")


def _utf16_without_bom(sample: bytes) -> str | None:
    # Mostly-ASCII UTF-16 has a zero in every other byte, on one side only.
    pairs = len(sample) // 2
    if pairs == 0:
        return None
    even = sample[0::2].count(0) / pairs
    odd = sample[1::2].count(0) / pairs
    if odd > 0.4 and even < 0.05:
        return "utf-16-le"
    if even > 0.4 and odd < 0.05:
        return "utf-16-be"
    return None


def _checked(data: bytes, encoding: str) -> str | None:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    return text if not _is_garbage(text) else None


def _is_garbage(text: str) -> bool:
    """Control characters, unassigned code points and surrogates: binary decoded as text."""
    sample = text[:SNIFF_BYTES]
    if "\x00" in sample:
        return True
    bad = sum(
        1
        for char in sample
        if char == "\ufffd"
        or (char not in "\t\n\r\f\v" and unicodedata.category(char) in ("Cc", "Cn", "Cs", "Co"))
    )
    return bad > MAX_GARBAGE_SHARE * max(len(sample), 1)


def text_format(text: str, *, filename: str) -> Format:
    """HTML, Markdown, CSV or plain text: the content first, the extension as a hint."""
    head = text[:SNIFF_BYTES]
    suffix = extension(filename)
    if _HTML_DOCUMENT.search(head[:4096]):
        return "html"
    if suffix in HTML_EXTENSIONS and _HTML_TAG.search(head):
        return "html"
    if suffix in MARKDOWN_EXTENSIONS:
        return "markdown"
    if suffix in CSV_EXTENSIONS:
        return "csv"
    # A .txt, another extension or none: the content must make a clear case.
    if looks_like_markdown(head):
        return "markdown"
    if looks_like_csv(head):
        return "csv"
    if suffix != ".txt" and len(_HTML_TAG.findall(head)) >= 3:
        return "html"
    return "txt"
