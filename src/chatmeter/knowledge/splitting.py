"""Cut one section's text into overlapping spans that each fit a token limit.

The text is read as words, each with the kind of boundary that follows it:
paragraph, sentence, line, word, or none (inside a word too long to keep
whole). A span grows word by word while it fits, then ends at the strongest
boundary in its second half, so cuts fall between paragraphs where they can,
then between sentences, lines and words. The next span starts about
``overlap`` tokens back, at a sentence start where one is near.

Token counts are estimated by adding up the words' own counts, which is exact
for WordPiece and close for others, and every span is then measured whole:
the measurement, not the estimate, is what must fit.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

NONE, WORD, LINE, SENTENCE, PARAGRAPH = range(5)  # boundary strength, weakest first
MIN_FILL = 0.5  # a span ends at a stronger boundary only if it keeps half its room

_WORD = re.compile(r"\S+?(?:[。！？]+|(?=\s)|\Z)")  # CJK sentences have no spaces to split at
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*\Z")


class Span(NamedTuple):
    start: int
    end: int
    tokens: int  # as measured


@dataclass(slots=True)
class _Unit:
    start: int
    end: int
    weight: int
    boundary: int  # strength of the boundary after it


def split(
    text: str,
    *,
    measure: Callable[[str], int],
    limit: int,
    weigh: Callable[[str], int],
    overlap: int,
    max_spans: int | None = None,
) -> list[Span]:
    """Spans of ``text`` whose ``measure`` is at most ``limit``, in order, overlapping.

    ``weigh`` gives one word's tokens without the fixed cost that ``measure``
    adds to every span (``measure("")``), so a span's estimate is that fixed
    cost plus its words' weights. With ``max_spans``, it stops once it has
    that many: the caller learns that there are at least as many.
    """
    fixed = measure("")
    budget = limit - fixed
    if budget < 1:
        raise ValueError("limit leaves no room for text")
    units = _units(text, weigh=weigh, budget=budget)
    if not units:
        return []
    if sum(unit.weight for unit in units) <= 2 * budget:  # else it can't fit: skip measuring
        whole = measure(text[units[0].start : units[-1].end])
        if whole <= limit:  # a section that fits is never cut
            return [Span(units[0].start, units[-1].end, whole)]
    return _pack(
        text,
        units,
        measure=measure,
        limit=limit,
        budget=budget,
        overlap=overlap,
        max_spans=max_spans,
    )


def _units(text: str, *, weigh: Callable[[str], int], budget: int) -> list[_Unit]:
    units: list[_Unit] = []
    matches = list(_WORD.finditer(text))
    for position, match in enumerate(matches):
        gap_end = matches[position + 1].start() if position + 1 < len(matches) else len(text)
        boundary = _boundary(match.group(), text[match.end() : gap_end])
        weight = weigh(match.group())
        if weight <= budget:
            units.append(_Unit(match.start(), match.end(), weight, boundary))
        else:
            units.extend(_pieces(text, match.start(), match.end(), boundary, weigh, budget))
    return units


def _boundary(word: str, gap: str) -> int:
    if gap.count("\n") >= 2:
        return PARAGRAPH
    if _SENTENCE_END.search(word):
        return SENTENCE
    return LINE if "\n" in gap else WORD


def _pieces(
    text: str, start: int, end: int, boundary: int, weigh: Callable[[str], int], budget: int
) -> list[_Unit]:
    """A word over the budget (a long URL, a base64 blob) cut into pieces that fit."""
    pieces = []
    while start < end:
        # The longest piece text[start:low] within budget; no token spans 100+ characters.
        low, high = start + 1, min(end, start + 100 * budget)
        while low < high:
            middle = (low + high + 1) // 2
            if weigh(text[start:middle]) <= budget:
                low = middle
            else:
                high = middle - 1
        pieces.append(_Unit(start, low, weigh(text[start:low]), NONE))
        start = low
    pieces[-1].boundary = boundary
    return pieces


def _pack(
    text: str,
    units: list[_Unit],
    *,
    measure: Callable[[str], int],
    limit: int,
    budget: int,
    overlap: int,
    max_spans: int | None = None,
) -> list[Span]:
    spans: list[Span] = []
    sums = _prefix_sums(units)  # the weight of units[i:j] is sums[j] - sums[i]
    first = fresh = 0  # fresh: the first unit no span has held yet
    while True:
        room, ceiling = budget, len(units) - 1
        while True:
            last = min(max(bisect_right(sums, sums[first] + room) - 2, first), ceiling)
            if last < len(units) - 1:
                last = _strongest_break(
                    units, sums, max(first, min(fresh, last)), last, origin=sums[first], room=room
                )
            tokens = measure(text[units[first].start : units[last].end])
            if tokens <= limit:
                break
            if last == first:
                _cut_to_fit(text, units, first, measure=measure, limit=limit)
                sums = _prefix_sums(units)
                fresh += fresh > first  # a unit before it became two
                ceiling = len(units) - 1
            else:  # the estimate fell short: shrink the room by what it missed, and retry
                room = max(min(room, sums[last + 1] - sums[first]) - (tokens - limit), 1)
                ceiling = last - 1  # and end earlier, even if the words weigh nothing
        spans.append(Span(units[first].start, units[last].end, tokens))
        if last == len(units) - 1 or (max_spans is not None and len(spans) >= max_spans):
            return spans
        fresh = last + 1
        first = _next_start(units, sums, first, last, budget=budget, overlap=overlap)


def _prefix_sums(units: list[_Unit]) -> list[int]:
    return [0, *accumulate(unit.weight for unit in units)]


def _strongest_break(
    units: list[_Unit], sums: list[int], earliest: int, last: int, *, origin: int, room: int
) -> int:
    """The end in ``earliest..last`` after the strongest boundary, among those half full."""
    best = last
    for end in range(last, earliest - 1, -1):  # latest first, so the longest span wins a tie
        if sums[end + 1] - origin < MIN_FILL * room:
            break
        if units[end].boundary > units[best].boundary:
            best = end
    return best


def _next_start(
    units: list[_Unit], sums: list[int], first: int, last: int, *, budget: int, overlap: int
) -> int:
    start = last + 1
    # At most the back half of the span is repeated, so every span moves on by
    # half of its own, even over words that weigh nothing (a run of accents).
    earliest = first + (last - first) // 2 + 1
    while start - 1 >= earliest and sums[last + 1] - sums[start - 1] <= overlap:
        start -= 1
    # Begin the overlap at a sentence start if that keeps at least half of it.
    for candidate in range(start, last + 1):
        if units[candidate - 1].boundary >= SENTENCE:
            if sums[last + 1] - sums[candidate] >= overlap / 2:
                start = candidate
            break
    # The next span must reach past this one: the overlap and the unit after
    # it have to fit together.
    while start <= last and sums[last + 2] - sums[start] > budget:
        start += 1
    return start


def _cut_to_fit(
    text: str, units: list[_Unit], index: int, *, measure: Callable[[str], int], limit: int
) -> None:
    """Split ``units[index]`` where its estimate fit but its measurement did not."""
    unit = units[index]
    if unit.end - unit.start < 2 or measure(text[unit.start : unit.start + 1]) > limit:
        raise ValueError("limit is too small to hold a single character")
    low, high = unit.start + 1, unit.end - 1
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[unit.start : middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    head_weight = max(unit.weight * (low - unit.start) // (unit.end - unit.start), 1)
    units[index : index + 1] = [
        _Unit(unit.start, low, head_weight, NONE),
        _Unit(low, unit.end, max(unit.weight - head_weight, 1), unit.boundary),
    ]
