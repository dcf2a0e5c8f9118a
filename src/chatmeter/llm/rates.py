"""The rate card: how many platform tokens one model token costs.

A rate is an exact fraction (``fractions.Fraction``), one for the prompt
("context") and one for the answer ("generation"); the default is 1 and 1, so
platform tokens equal model tokens. Weighted counts are rounded **up**, each
figure on its own: a fraction of a token is never given away, and each figure
is never more than one token above its exact weighted value (so the sum is
never more than two above). Rates come from configuration as strings ("1.5",
"3/2"), integers or Fractions; a float is read by its shortest decimal form
(0.1 means 1/10), never by its binary value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from chatmeter.llm.base import Usage

MAX_RATE = Fraction(10**6)  # a rate past this is a typo, not a price

RateValue = Fraction | int | float | str


def parse_rate(value: RateValue) -> Fraction:
    """An exact rate between 0 and ``MAX_RATE``, or ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError("a rate must be a number")
    try:
        rate = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError) as exc:
        raise ValueError(f"not a rate: {value!r}") from exc
    if not 0 <= rate <= MAX_RATE:
        raise ValueError(f"a rate must be between 0 and {MAX_RATE}")
    return rate


@dataclass(frozen=True, slots=True)
class Rate:
    """Platform tokens per model token, for input (prompt) and output (answer)."""

    input: Fraction = Fraction(1)
    output: Fraction = Fraction(1)

    @classmethod
    def of(cls, *, input: RateValue = 1, output: RateValue = 1) -> Rate:
        return cls(parse_rate(input), parse_rate(output))


DEFAULT_RATE = Rate()


@dataclass(frozen=True, slots=True)
class RateCard:
    """Rates by model name; models not on the card pay ``default``."""

    rates: Mapping[str, Rate] = field(default_factory=dict)
    default: Rate = DEFAULT_RATE

    def rate_for(self, model: str) -> Rate:
        return self.rates.get(model, self.default)


def charge(usage: Usage, rate: Rate = DEFAULT_RATE) -> tuple[int, int]:
    """Platform tokens for a usage: ``(context_tokens, generation_tokens)``, each rounded up."""
    context = _weighted(usage.prompt_tokens, rate.input)
    generation = _weighted(usage.completion_tokens, rate.output)
    return context, generation


def _weighted(tokens: int, rate: Fraction) -> int:
    if tokens < 0:
        raise ValueError("token counts are never negative")
    return math.ceil(tokens * rate)
