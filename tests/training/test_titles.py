"""What visitors see as a source: the customer's title, the document's own, or a readable name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatmeter.training.titles import MAX_TITLE, detected_title, readable_name, shown_title


@pytest.mark.parametrize(
    ("filename", "readable"),
    [
        ("billing-and-renewal.md", "Billing and renewal"),
        ("FAQ_2026.pdf", "FAQ 2026"),
        ("C:\\docs\\price list.v2.docx", "Price list v2"),
        ("README", "README"),
        ("---.txt", "Document"),
        (".htaccess", "Htaccess"),
    ],
)
def test_a_file_name_is_made_readable(filename: str, readable: str) -> None:
    assert readable_name(filename) == readable


def test_a_stated_title_is_kept_and_one_that_repeats_the_file_name_is_not() -> None:
    assert detected_title("Opening hours", "opening-hours.md") == "Opening hours"
    # The readers fall back to the file's name when a document states no title.
    assert detected_title("opening-hours", "opening-hours.md") == ""
    assert detected_title("  Price \n list  ", "a.pdf") == "Price list"
    assert len(detected_title("x" * 500, "a.pdf")) == MAX_TITLE


def test_the_customers_title_wins_then_the_documents_then_the_name() -> None:
    assert shown_title("Our prices", "Price list 2026", "prices.pdf") == "Our prices"
    assert shown_title("  ", "Price list 2026", "prices.pdf") == "Price list 2026"
    assert shown_title("", "", "price-list.pdf") == "Price list"


@given(st.text(max_size=300), st.text(max_size=300), st.text(min_size=1, max_size=255))
def test_a_source_always_has_a_title_and_never_an_empty_one(
    title: str, detected: str, filename: str
) -> None:
    assert shown_title(title, detected, filename).strip()
