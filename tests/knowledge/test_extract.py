"""Every supported format read from a real file, and every way a file is refused.

The refusals are what the customer sees, so each test checks the ``reason``
code and that the message says something useful.
"""

from __future__ import annotations

import codecs
import io

import docx
import pytest
from docx.enum.style import WD_STYLE_TYPE

from chatmeter.knowledge.errors import SUPPORTED_FORMATS
from chatmeter.knowledge.extract import (
    Block,
    CorruptFile,
    Document,
    EmptyFile,
    EncryptedFile,
    ExtractionError,
    FileTooLarge,
    NoTextLayer,
    UnsupportedFormat,
    ZipBomb,
    extract,
)
from chatmeter.knowledge.formats import word as word_format
from tests.knowledge import files

LIMIT = 10_000_000


def read(data: bytes, filename: str, *, max_bytes: int = LIMIT) -> Document:
    return extract(data, filename=filename, max_bytes=max_bytes)


# --- PDF -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def handbook_pdf() -> bytes:
    return files.pdf(
        [
            [
                (
                    "Introduction",
                    [
                        "Chatmeter answers visitors from your own files.",
                        "It is paid for with prepaid tokens.",
                    ],
                )
            ],
            [
                (None, ["The introduction goes on over the page."]),
                ("Buying tokens", ["One package holds 50,000 tokens."]),
            ],
            [],  # a blank page keeps its number
            [(None, ["Packages never expire."])],
        ],
        title="Chatmeter Handbook",
    )


def test_pdf_pages_keep_their_numbers_text_and_bookmarked_headings(handbook_pdf: bytes) -> None:
    document = read(handbook_pdf, "handbook.pdf")

    assert document.format == "pdf"
    assert document.title == "Chatmeter Handbook"
    assert [page.number for page in document.pages] == [1, 2, 3, 4]
    assert "prepaid tokens" in document.pages[0].text
    assert document.pages[2].text == "" and document.pages[2].blocks == []
    assert document.pages[0].blocks == [
        Block(
            ("Introduction",),
            "Chatmeter answers visitors from your own files.\nIt is paid for with prepaid tokens.",
        ),
    ]
    # A bookmark applies from where its title is printed, not from the top of its page.
    assert document.pages[1].blocks == [
        Block(("Introduction",), "The introduction goes on over the page."),
        Block(("Buying tokens",), "One package holds 50,000 tokens."),
    ]
    assert document.pages[3].blocks == [Block(("Buying tokens",), "Packages never expire.")]


def test_pdf_without_title_metadata_is_named_after_the_file() -> None:
    data = files.pdf([[(None, ["Just a line of text."])]])
    assert read(data, "C:\\Users\\ann\\Price list 2026.pdf").title == "Price list 2026"


def test_password_protected_pdf_is_refused_as_encrypted(handbook_pdf: bytes) -> None:
    with pytest.raises(EncryptedFile) as caught:
        read(files.encrypted_pdf(handbook_pdf), "handbook.pdf")
    assert caught.value.reason == "encrypted"
    assert "password" in caught.value.message


def test_pdf_with_only_an_owner_password_is_read(handbook_pdf: bytes) -> None:
    # Restrictions on printing or copying don't stop a reader from opening it.
    document = read(files.encrypted_pdf(handbook_pdf, password=""), "handbook.pdf")
    assert "50,000 tokens" in document.text


def test_scanned_pdf_without_text_layer_is_refused_as_no_text() -> None:
    with pytest.raises(NoTextLayer) as caught:
        read(files.image_only_pdf(), "scan.pdf")
    assert caught.value.reason == "no_text"
    assert "OCR" in caught.value.message


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_pdf_is_refused_as_corrupt(handbook_pdf: bytes, damage: str) -> None:
    data = b"%PDF-1.7\n" + bytes(range(256)) * 8 if damage == "garbage" else handbook_pdf[:200]
    with pytest.raises(CorruptFile) as caught:
        read(data, "handbook.pdf")
    assert caught.value.reason == "corrupt"


# --- DOCX ----------------------------------------------------------------------


def test_docx_headings_paragraphs_and_tables_in_reading_order() -> None:
    document = read(files.word(), "handbook.docx")

    assert document.format == "docx"
    assert document.title == "Chatmeter Handbook"  # the Title style, not a heading
    assert [page.number for page in document.pages] == [1]
    assert document.pages[0].blocks == [
        Block((), "Welcome to the handbook."),
        Block(("Billing",), "Tokens are bought in packages."),
        Block(
            ("Billing", "Packages"),
            "One package holds 50,000 tokens.\n\nPackages never expire.\n\n"
            "Plan: Starter; Tokens: 50,000\n\nPlan: Pro; Tokens: 500,000",
        ),
        Block(("Support",), "Write to support by email."),
    ]


def test_docx_title_property_wins() -> None:
    assert read(files.word(title="Staff Handbook"), "x.docx").title == "Staff Handbook"


def test_docx_custom_style_based_on_a_heading_is_a_heading() -> None:
    document = docx.Document()
    style = document.styles.add_style("Policy Heading", WD_STYLE_TYPE.PARAGRAPH)
    style.base_style = document.styles["Heading 2"]
    document.add_heading("Policies", level=1)
    document.add_paragraph("Refunds", style="Policy Heading")
    document.add_paragraph("Within 14 days.")
    buffer = io.BytesIO()
    document.save(buffer)

    blocks = read(buffer.getvalue(), "policies.docx").pages[0].blocks
    assert blocks == [Block(("Policies", "Refunds"), "Within 14 days.")]


def test_docx_named_txt_is_still_read_as_docx() -> None:
    document = read(files.word(), "notes.txt")
    assert document.format == "docx"
    assert "50,000 tokens" in document.text


def test_docx_that_unpacks_to_an_absurd_ratio_is_a_zip_bomb() -> None:
    data = files.word_with_media(bytes(20 * 1024 * 1024))  # 20 MB of zeros: ~1000x
    assert len(data) < 100_000
    with pytest.raises(ZipBomb) as caught:
        read(data, "handbook.docx")
    assert caught.value.reason == "zip_bomb"


def test_docx_declaring_a_huge_size_is_a_zip_bomb_before_anything_is_unpacked() -> None:
    data = files.declare_size(files.word(), "word/document.xml", 4_000_000_000)
    with pytest.raises(ZipBomb):
        read(data, "handbook.docx")


def test_docx_with_many_ordinary_members_within_limits_is_read() -> None:
    data = files.word_with_media(bytes(range(256)) * 4096)  # 1 MB, barely compressible
    assert "Support" in read(data, "handbook.docx").pages[0].text


def test_zip_limits_are_checked_on_declared_sizes() -> None:
    with pytest.raises(ZipBomb):
        word_format.check_archive(files.word(), max_unpacked_bytes=1000)


def test_damaged_docx_is_refused_as_corrupt() -> None:
    data = files.word()
    with pytest.raises(CorruptFile):
        read(data[: len(data) // 2], "handbook.docx")


def test_zip_that_is_not_a_word_document_is_unsupported() -> None:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(UnsupportedFormat, match="Excel workbook"):
        read(buffer.getvalue(), "prices.docx")


# --- text formats --------------------------------------------------------------


MARKDOWN = """\
---
title: Help Center
---
# Buying tokens

One **package** holds [50,000 tokens](https://example.com/packages).

## Refunds

Refunds are possible within 14 days.

```bash
# not a heading: a comment in code
chatmeter train
```

Limits
------

| Plan | Tokens |
|------|--------|
| Starter | 50,000 |
"""


def test_markdown_headings_make_the_path_and_markup_is_dropped() -> None:
    document = read(MARKDOWN.encode(), "help.md")

    assert document.format == "markdown"
    assert document.title == "Help Center"
    assert document.pages[0].blocks == [
        Block(("Buying tokens",), "One package holds 50,000 tokens."),
        Block(
            ("Buying tokens", "Refunds"),
            "Refunds are possible within 14 days.\n\n"
            "# not a heading: a comment in code\nchatmeter train",
        ),
        Block(("Buying tokens", "Limits"), "| Plan | Tokens |\n| Starter | 50,000 |"),
    ]


def test_markdown_keeps_code_spans_names_and_powers_as_written() -> None:
    text = (
        "# Packages\n\n"
        "Any module with a __path__ attribute is a package; `__init__.py` runs first.\n"
        "Call `f(*args, **kwargs)`; 10**2 is 100 and 10**-2 is 0.01.\n"
        "Press **Get more tokens**, __then confirm__, or *cancel* with _Escape_.\n"
    )
    (block,) = read(text.encode(), "packages.md").pages[0].blocks
    assert block.text == (
        "Any module with a __path__ attribute is a package; __init__.py runs first.\n"
        "Call f(*args, **kwargs); 10**2 is 100 and 10**-2 is 0.01.\n"
        "Press Get more tokens, then confirm, or cancel with Escape."
    )


HTML = """<!DOCTYPE html>
<html><head><title>Pricing &amp; plans</title>
<style>body { color: red }</style>
<script>window.track("visit");</script></head>
<body>
<nav><a href="/">Home</a> <a href="/pricing">Pricing</a></nav>
<h1>Pricing</h1>
<p>Tokens are sold
   in packages.<br>Prices include VAT.</p>
<div hidden><div>Secret</div> draft</div>
<svg><title>Logo</title><text>ACME</text></svg>
<h2>Plans</h2>
<table><tr><th>Plan</th><th>Tokens</th></tr><tr><td>Starter</td><td>50,000</td></tr></table>
<noscript>Enable JavaScript</noscript>
<script>console.log("never shown")</script>
</body></html>"""


def test_html_keeps_headings_and_text_and_drops_script_style_and_nav() -> None:
    document = read(HTML.encode(), "pricing.html")

    assert document.format == "html"
    assert document.title == "Pricing & plans"
    assert document.pages[0].blocks == [
        Block(("Pricing",), "Tokens are sold in packages.\nPrices include VAT."),
        Block(("Pricing", "Plans"), "Plan: Starter; Tokens: 50,000"),
    ]
    for dropped in (
        "color",
        "track",
        "Home",
        "never shown",
        "Secret",
        "draft",
        "JavaScript",
        "Logo",
        "ACME",
    ):
        assert dropped not in document.text


def test_malformed_and_deeply_nested_html_is_read_without_recursion() -> None:
    page = "<div>" * 20_000 + "<h2>Deep<p>inside <b>unclosed" + "</div>" * 3 + "<nav>menu"
    document = read(page.encode(), "deep.html")
    assert document.pages[0].blocks == [Block(("Deep",), "inside unclosed")]


def test_html_without_optional_end_tags() -> None:
    page = "<html><head><title>Hours</title><body><h1>Opening hours<p>Monday to Friday<p>9-17"
    document = read(page.encode(), "hours.htm")
    assert document.title == "Hours"
    assert document.pages[0].blocks == [Block(("Opening hours",), "Monday to Friday\n\n9-17")]


def test_csv_rows_become_self_contained_passages() -> None:
    data = b'Plan,Tokens,Price\nStarter,"50,000",20 EUR\nPro,"500,000",\n'
    document = read(data, "plans.csv")

    assert document.format == "csv"
    assert document.title == "plans"
    assert document.pages[0].blocks == [
        Block((), "Plan: Starter; Tokens: 50,000; Price: 20 EUR\n\nPlan: Pro; Tokens: 500,000"),
    ]


def test_csv_from_excel_in_windows_1252_with_semicolons() -> None:
    data = "Produit;Prix\nCafé;2 €\nThé;1,50 €\n".encode("cp1252")
    document = read(data, "export.csv")
    assert document.pages[0].blocks == [
        Block((), "Produit: Café; Prix: 2 €\n\nProduit: Thé; Prix: 1,50 €"),
    ]


def test_csv_with_only_a_header_row_is_empty() -> None:
    with pytest.raises(EmptyFile):
        read(b"Plan,Tokens\n", "plans.csv")


@pytest.mark.parametrize(
    "encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom", "utf-16-le-no-bom", "utf-32", "cp1252"]
)
def test_plain_text_in_any_common_encoding(encoding: str) -> None:
    text = "Café opening hours\r\nMonday to Friday, 9–17.\r\n\r\nClosed on holidays."
    if encoding == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    elif encoding == "utf-16-le-no-bom":
        data = text.encode("utf-16-le")
    elif encoding == "cp1252":
        data = text.replace("–", "-").encode("cp1252")
        text = text.replace("–", "-")
    else:
        data = text.encode(encoding)
    document = read(data, "hours.txt")

    assert document.format == "txt"
    assert document.title == "hours"
    assert document.pages[0].blocks == [Block((), text.replace("\r\n", "\n"))]
    assert "\ufeff" not in document.text


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("page.txt", HTML, "html"),  # a whole HTML page is HTML whatever its name
        ("page.html", "<p>Hello <b>there</b></p>", "html"),
        ("notes.md", "Plain words <br> and a tag", "markdown"),  # the extension breaks ties
        ("notes.txt", MARKDOWN, "markdown"),
        (
            "upload",
            "Name,Email,Plan\nAnn,ann@example.com,Pro\nBob,bob@example.com,Starter\n",
            "csv",
        ),
        ("notes.txt", "Dear team, thanks. We met, talked, agreed.\nSee you soon.", "txt"),
        (
            "poem",
            "Roses are red, they say,\nViolets are blue, they say,\nSugar is sweet, "
            "as is the long and winding road to the sea,\n",
            "txt",
        ),
        ("data.csv", "Just one column\nalpha\nbeta\n", "csv"),
        ("report.pdf", "This is text, whatever the name says.", "txt"),
    ],
)
def test_text_formats_told_apart_by_content_with_the_extension_as_a_hint(
    filename: str, content: str, expected: str
) -> None:
    assert read(content.encode(), filename).format == expected


# --- refusals ------------------------------------------------------------------


def test_png_named_pdf_is_unsupported_and_says_what_is_supported() -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        read(files.png(), "contract.pdf")
    assert caught.value.reason == "unsupported"
    assert "PNG image" in caught.value.message
    assert SUPPORTED_FORMATS in caught.value.message


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (bytes(range(256)) * 16, "a binary file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "older Microsoft Office"),
        (b"{\\rtf1\\ansi Hello}", "RTF"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "gzip"),
    ],
)
def test_other_files_are_unsupported_with_a_name_for_what_they_are(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedFormat, match=named):
        read(data, "document.txt")


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"", "empty.txt"),
        (b"   \n\t\r\n", "empty.txt"),
        (codecs.BOM_UTF16_LE, "empty.txt"),
        (b"\xef\xbb\xbf \n", "empty.csv"),
        (b"<html><script>x()</script></html>", "empty.html"),
        (b"# A heading and nothing under it\n", "empty.md"),
    ],
)
def test_files_without_text_are_empty(data: bytes, filename: str) -> None:
    with pytest.raises(EmptyFile) as caught:
        read(data, filename)
    assert caught.value.reason == "empty"


def test_file_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(FileTooLarge) as caught:
        read(files.png(), "big.pdf", max_bytes=10)  # unsupported too, but size comes first
    assert caught.value.reason == "too_large"
    assert caught.value.status_code == 413
    assert "limit" in caught.value.message


def test_every_refusal_is_one_exception_type_with_a_json_shape() -> None:
    with pytest.raises(ExtractionError) as caught:
        read(b"", "x.txt")
    assert caught.value.to_dict() == {
        "error": {
            "code": "unprocessable_file",
            "message": caught.value.message,
            "details": {"reason": "empty"},
        },
    }
