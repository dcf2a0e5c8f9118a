"""An invoice or receipt as a PDF: one A4 page laid out from an ``InvoiceDocument``.

The layout knows nothing of the database: ``billing.documents`` puts the figures and
words together, this module only draws them. The text is set in DejaVu Sans, a
Unicode TrueType font, so that a customer called "Łódź Café" or "Ωμέγα ООО" reads
as written (the PDF core fonts know Latin-1 only). The font is the Debian package
``fonts-dejavu-core`` (installed with every Debian and Ubuntu that has fontconfig,
and by ``make install``); ``FONT_DIRS`` lists where other systems keep it.

The output is the same bytes for the same document: the creation date is the
invoice's own, and the file identifier is a hash of the content.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

from chatmeter.billing.parties import Party
from chatmeter.errors import ChatmeterError

FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),  # Debian, Ubuntu
    Path("/usr/share/fonts/dejavu-sans-fonts"),  # Fedora, RHEL
    Path("/usr/share/fonts/TTF"),  # Arch
    Path("/usr/share/fonts/dejavu"),  # Alpine
    Path("/usr/local/share/fonts/dejavu"),  # FreeBSD
)
FONT_MISSING = (
    "invoice PDFs need the DejaVu Sans font: install the package fonts-dejavu-core "
    "(apt-get install fonts-dejavu-core)"
)
FAMILY = "DejaVu"

PAGE_WIDTH = 210.0  # A4, millimetres
MARGIN = 18.0
CONTENT = PAGE_WIDTH - 2 * MARGIN
INK = (17, 24, 39)
MUTED = (107, 114, 128)
RULE = (209, 213, 219)
SHADE = (243, 244, 246)
# Description, quantity, unit price, amount: widths in millimetres (together CONTENT).
COLUMNS = (60.0, 66.0, 24.0, 24.0)


@dataclass(frozen=True)
class Line:
    """One row of the table; the texts are already formatted."""

    description: str
    quantity: str
    unit_price: str
    amount: str


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything one invoice or receipt shows, in words and formatted figures."""

    title: str  # "Invoice" or "Receipt"
    number: str
    facts: tuple[tuple[str, str], ...]  # (label, value) under the title: dates, period
    seller: Party
    customer: Party
    lines: tuple[Line, ...]
    subtotal: str
    tax_label: str  # "Tax 20 %"
    tax: str
    total: str
    currency: str
    status: tuple[str, ...]  # the first line is the status, the next ones explain it
    created_at: dt.datetime  # the PDF's creation date


def invoice_pdf(document: InvoiceDocument) -> bytes:
    """The document as a one-page A4 PDF."""
    pdf = _new_pdf(document)
    _header(pdf, document)
    _parties(pdf, document)
    _table(pdf, document)
    _totals(pdf, document)
    _status(pdf, document)
    _footer(pdf, document)
    return bytes(pdf.output())


@functools.cache
def font_paths() -> dict[str, Path]:
    """The DejaVu Sans files by style, from the first folder that has them all."""
    for folder in FONT_DIRS:
        paths = {style: folder / name for style, name in FONT_FILES.items()}
        if all(path.is_file() for path in paths.values()):
            return paths
    raise ChatmeterError(FONT_MISSING)


# --- the page's parts -------------------------------------------------------------------


def _new_pdf(document: InvoiceDocument) -> FPDF:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.set_auto_page_break(auto=True, margin=MARGIN + 8)
    for style, path in font_paths().items():
        pdf.add_font(FAMILY, style, str(path))
    pdf.set_creation_date(document.created_at)
    pdf.set_title(f"{document.title} {document.number}")
    pdf.set_author(document.seller.name)
    pdf.set_subject(f"{document.title} {document.number} for {document.customer.name}")
    pdf.set_creator("Chatmeter")
    pdf.set_lang("en")
    pdf.add_page()
    return pdf


def _header(pdf: FPDF, document: InvoiceDocument) -> None:
    """The seller on the left; the title, number and dates on the right."""
    top = pdf.get_y()
    half = CONTENT / 2
    _font(pdf, 14, bold=True)
    pdf.multi_cell(half - 4, 7, document.seller.name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _font(pdf, 9, color=MUTED)
    _party_lines(pdf, document.seller, half - 4)
    seller_bottom = pdf.get_y()

    right = MARGIN + half
    pdf.set_xy(right, top)
    _font(pdf, 22, bold=True)
    pdf.cell(half, 10, document.title, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    _font(pdf, 11)
    pdf.cell(half, 6, document.number, align="R", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.ln(2)
    for label, value in document.facts:
        pdf.set_x(right)
        _font(pdf, 9, color=MUTED)
        pdf.cell(half * 0.45, 5, label, align="R")
        _font(pdf, 9)
        pdf.cell(half * 0.55, 5, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(max(seller_bottom, pdf.get_y()) + 8)


def _parties(pdf: FPDF, document: InvoiceDocument) -> None:
    """The customer: "Billed to"."""
    _font(pdf, 8, bold=True, color=MUTED)
    pdf.cell(CONTENT, 5, "BILLED TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _font(pdf, 11, bold=True)
    pdf.multi_cell(CONTENT, 6, document.customer.name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _font(pdf, 9)
    _party_lines(pdf, document.customer, CONTENT)
    pdf.ln(8)


def _party_lines(pdf: FPDF, party: Party, width: float) -> None:
    for line in party.lines:
        pdf.multi_cell(width, 4.6, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if party.tax_id:
        pdf.multi_cell(width, 4.6, f"Tax ID: {party.tax_id}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(pdf: FPDF, document: InvoiceDocument) -> None:
    """What is billed: one row per line, amounts in the invoice's currency."""
    heads = ("Description", "Quantity", "Unit price", f"Amount ({document.currency})")
    _font(pdf, 8, bold=True, color=MUTED)
    pdf.set_fill_color(*SHADE)
    for width, head, align in zip(COLUMNS, heads, ("L", "L", "R", "R"), strict=True):
        pdf.cell(width, 8, head, align=align, fill=True)
    pdf.ln(8)
    for line in document.lines:
        _row(pdf, (line.description, line.quantity, line.unit_price, line.amount))
    pdf.ln(3)


def _row(pdf: FPDF, texts: Sequence[str]) -> None:
    """A row whose cells may wrap: all as tall as the tallest, with a rule under it."""
    _font(pdf, 9)
    cells = list(zip(COLUMNS, texts, ("L", "L", "R", "R"), strict=True))
    lines = max(_line_count(pdf, width, text) for width, text, _ in cells)
    top = pdf.get_y()
    bottom = top + 4 + 5 * lines
    left = MARGIN
    for width, text, align in cells:
        pdf.set_xy(left, top + 2)
        pdf.multi_cell(width, 5, text, align=align)
        left += width
    pdf.set_draw_color(*RULE)
    pdf.line(MARGIN, bottom, MARGIN + CONTENT, bottom)
    pdf.set_xy(MARGIN, bottom)


def _line_count(pdf: FPDF, width: float, text: str) -> int:
    """How many lines ``text`` takes in a cell ``width`` wide, drawing nothing."""
    lines = pdf.multi_cell(width, 5, text, dry_run=True, output=MethodReturnValue.LINES)
    assert isinstance(lines, list)
    return len(lines)


def _totals(pdf: FPDF, document: InvoiceDocument) -> None:
    """Subtotal, tax and total, right-aligned under the amounts."""
    label_width = COLUMNS[1] + COLUMNS[2]
    left = MARGIN + COLUMNS[0]
    rows = (
        ("Subtotal", document.subtotal, False),
        (document.tax_label, document.tax, False),
        (f"Total ({document.currency})", document.total, True),
    )
    for label, value, strong in rows:
        pdf.set_x(left)
        if strong:
            pdf.set_draw_color(*INK)
            pdf.line(left, pdf.get_y(), MARGIN + CONTENT, pdf.get_y())
        _font(pdf, 11 if strong else 9, bold=strong, color=INK if strong else MUTED)
        pdf.cell(label_width, 7 if strong else 6, label, align="R")
        _font(pdf, 11 if strong else 9, bold=strong)
        height = 7 if strong else 6
        pdf.cell(COLUMNS[3], height, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(8)


def _status(pdf: FPDF, document: InvoiceDocument) -> None:
    first, *rest = document.status
    _font(pdf, 8, bold=True, color=MUTED)
    pdf.cell(CONTENT, 5, "STATUS", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _font(pdf, 11, bold=True)
    pdf.multi_cell(CONTENT, 6, first, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _font(pdf, 9)
    for line in rest:
        pdf.multi_cell(CONTENT, 5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _footer(pdf: FPDF, document: InvoiceDocument) -> None:
    pdf.set_auto_page_break(auto=False)  # the footer sits in the bottom margin
    pdf.set_y(-MARGIN - 6)
    pdf.set_draw_color(*RULE)
    pdf.line(MARGIN, pdf.get_y(), MARGIN + CONTENT, pdf.get_y())
    _font(pdf, 8, color=MUTED)
    note = f"{document.title} {document.number} · {document.seller.name}"
    pdf.cell(CONTENT / 2, 8, note)
    pdf.cell(CONTENT / 2, 8, f"All amounts in {document.currency}", align="R")


def _font(pdf: FPDF, size: float, *, bold: bool = False, color: tuple[int, int, int] = INK) -> None:
    pdf.set_font(FAMILY, "B" if bold else "", size)
    pdf.set_text_color(*color)
