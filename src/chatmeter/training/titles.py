"""What a visitor sees as an answer's source: a document's title, never its file's name.

A file's name is the customer's own, often internal ("billing-and-renewal.md",
"FINAL_v3 (2).pdf"). Visitors see, in order: the title the customer gave the file,
else the title the document states (a Markdown heading or front matter, an HTML
``<title>``, a PDF's or Word file's metadata; ``detected_title``), else the file's
name made readable ("Billing and renewal").
"""

from __future__ import annotations

import re

from chatmeter.knowledge.document import title_from_filename

MAX_TITLE = 200  # characters, as stored
_SEPARATORS = re.compile(r"[\s_\-.]+")


def readable_name(filename: str) -> str:
    """``billing-and-renewal.md`` -> ``Billing and renewal``; ``FAQ_2026.pdf`` -> ``FAQ 2026``."""
    words = _SEPARATORS.sub(" ", title_from_filename(filename)).strip()
    if not words:
        return "Document"
    return words[0].upper() + words[1:]


def detected_title(stated: str, filename: str) -> str:
    """The document's stated title, or "" when it only repeats the file's name (the
    readers fall back to the name when a document states none)."""
    title = " ".join(stated.split())[:MAX_TITLE]
    return "" if title == title_from_filename(filename) else title


def shown_title(title: str, detected: str, filename: str) -> str:
    """The customer's title, else the document's own, else the name made readable."""
    return title.strip() or detected.strip() or readable_name(filename)
