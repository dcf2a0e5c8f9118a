"""The rate card: exact fractions, rounded up, never a fraction of a token given away."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatmeter.llm.base import Usage
from chatmeter.llm.rates import DEFAULT_RATE, MAX_RATE, Rate, RateCard, charge, parse_rate

tokens = st.integers(min_value=0, max_value=10**9)
rates = st.fractions(min_value=0, max_value=1000, max_denominator=10**6)


@given(prompt=tokens, completion=tokens)
def test_the_default_rate_charges_model_tokens(prompt: int, completion: int) -> None:
    assert charge(Usage(prompt, completion, "provider")) == (prompt, completion)


@given(prompt=tokens, completion=tokens, input_rate=rates, output_rate=rates)
def test_each_figure_is_rounded_up_by_less_than_one(
    prompt: int, completion: int, input_rate: Fraction, output_rate: Fraction
) -> None:
    context, generation = charge(
        Usage(prompt, completion, "tokenizer"), Rate(input_rate, output_rate)
    )
    for charged, exact in ((context, prompt * input_rate), (generation, completion * output_rate)):
        assert isinstance(charged, int)
        assert exact <= charged < exact + 1


@given(a=tokens, b=tokens, rate=rates)
def test_more_tokens_never_cost_less(a: int, b: int, rate: Fraction) -> None:
    low, high = sorted((a, b))
    card = Rate(rate, rate)
    assert charge(Usage(low, low, "provider"), card) <= charge(Usage(high, high, "provider"), card)


def test_rates_parse_exactly() -> None:
    assert Rate.of(input="1.5", output="3/4") == Rate(Fraction(3, 2), Fraction(3, 4))
    assert parse_rate(0.1) == Fraction(1, 10)  # the decimal meant, not the binary float
    assert parse_rate(2) == 2
    assert charge(Usage(3, 1, "provider"), Rate.of(input="0.5", output="0.1")) == (2, 1)
    for bad in ("-1", "abc", "1/0", True, MAX_RATE + 1):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_the_card_falls_back_to_the_default() -> None:
    card = RateCard({"gpt-4o": Rate.of(input=2, output=8)})
    assert card.rate_for("gpt-4o") == Rate(Fraction(2), Fraction(8))
    assert card.rate_for("SmolLM2-135M-Instruct") == DEFAULT_RATE
