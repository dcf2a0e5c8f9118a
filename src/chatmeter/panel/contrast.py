"""Colour contrast as WCAG 2.2 measures it: which text colour reads on a customer's
brand colour (an assistant's avatar), and the ratio the panel's own colours are held to."""

from __future__ import annotations

BLACK = "#000000"
WHITE = "#ffffff"


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    """The relative luminance of a ``#rrggbb`` colour."""
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(red) + 0.7152 * _channel(green) + 0.0722 * _channel(blue)


def contrast_ratio(first: str, second: str) -> float:
    """From 1 (the same) to 21 (black on white); AA asks 4.5 of normal text."""
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_on(background: str) -> str:
    """Black or white, whichever contrasts more with ``background`` (always at least 4.58:1)."""
    return (
        BLACK if contrast_ratio(BLACK, background) >= contrast_ratio(WHITE, background) else WHITE
    )
