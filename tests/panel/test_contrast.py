"""The panel's colours read at WCAG 2.2 AA (4.5:1 for text), and an assistant's avatar
letter is black or white, whichever reads on its colour."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatmeter.panel.contrast import BLACK, WHITE, contrast_ratio, text_on

PANEL_CSS = Path(__file__).parents[2] / "src" / "chatmeter" / "panel" / "static" / "panel.css"
AA = 4.5


def tokens() -> dict[str, str]:
    """The colour tokens in panel.css's ``:root``, by name (``--muted``: ``muted``)."""
    root = re.search(r":root \{(.*?)\n\}", PANEL_CSS.read_text(), re.S)
    assert root is not None
    return dict(re.findall(r"--([\w-]+): (#[0-9a-f]{6});", root[1]))


# Each text colour on each background it is used on.
PAIRS = [
    *[(text, back) for text in ("ink", "ink-2", "muted", "brand") for back in ("bg", "card")],
    ("muted", "brand-soft"),
    ("brand", "brand-soft"),
    ("danger", "card"),
    ("danger", "danger-soft"),
    ("warn", "warn-soft"),
    ("ok", "ok-soft"),
]


@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_every_text_colour_reads_on_its_background(text: str, background: str) -> None:
    colours = tokens()
    ratio = contrast_ratio(colours[text], colours[background])
    assert ratio >= AA, f"--{text} on --{background}: {ratio:.2f}:1"


def test_white_reads_on_the_buttons_and_the_alarm() -> None:
    colours = tokens()
    for background in ("brand", "brand-dark", "danger"):
        assert contrast_ratio(WHITE, colours[background]) >= AA, background


def test_the_ratio_is_the_one_wcag_defines() -> None:
    assert contrast_ratio(BLACK, WHITE) == pytest.approx(21)
    assert contrast_ratio("#777777", "#777777") == pytest.approx(1)
    assert contrast_ratio("#64748b", "#f6f7f9") == pytest.approx(4.44, abs=0.01)  # as reported


@pytest.mark.parametrize(
    "colour",
    ["#facc15", "#ffff00", "#2563eb", "#0f766e", "#777777", "#ffffff", "#000000", "#14b8a6"],
)
def test_the_avatar_letter_reads_on_any_colour(colour: str) -> None:
    letter = text_on(colour)
    assert contrast_ratio(letter, colour) >= AA
    assert letter == (
        BLACK if colour in ("#facc15", "#ffff00", "#ffffff", "#777777", "#14b8a6") else WHITE
    )
