"""The two balance emails, decided by ``chatmeter.ledger.thresholds``.

Promises guarded here:

- the low-balance warning fires when the balance drops *below* 20% of the
  month's limit, in exact integer arithmetic (5000 → 999 is low, 1000 is not);
- it fires once, and again only after tokens lifted the balance back to 20%
  or more;
- the depleted notice fires once when the balance reaches zero, and again only
  after tokens came back;
- with no limit (nothing granted this month) nobody is emailed.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatmeter.ledger.thresholds import LOW_BALANCE_PERCENT, Alarms, Notice, evaluate, is_low

FRESH = Alarms(low_armed=True, depleted_armed=True)
ALL_ALARMS = [Alarms(low, depleted) for low in (True, False) for depleted in (True, False)]

quick = settings(max_examples=300, deadline=None, database=None)


def exactly_low(balance: int, limit: int, percent: int = LOW_BALANCE_PERCENT) -> bool:
    """The definition, in rationals: strictly below ``percent`` % of a positive limit."""
    return limit > 0 and Fraction(balance, limit) < Fraction(percent, 100)


def run(balances: list[int], limit: int, alarms: Alarms = FRESH) -> list[list[Notice]]:
    """Feed a sequence of balances through ``evaluate``; the notices of each step."""
    out = []
    for balance in balances:
        notices, alarms = evaluate(balance=balance, limit=limit, alarms=alarms)
        out.append(notices)
    return out


# --- is_low -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "limit", "low"),
    [
        (999, 5000, True),
        (1000, 5000, False),
        (1000, 5001, True),  # 20% of 5001 is 1000.2
        (1001, 5001, False),
        (0, 5000, True),
        (9_999, 50_000, True),
        (10_000, 50_000, False),
        (0, 1, True),
        (1, 1, False),
        (1, 5, False),
        (0, 5, True),
        (0, 0, False),  # no limit: never low
        (5, 0, False),
    ],
)
def test_is_low_boundaries(balance: int, limit: int, low: bool) -> None:
    """Strictly below 20%: 999 of 5,000 is low, 1,000 is not."""
    assert is_low(balance, limit) is low


def test_is_low_exhaustively_for_small_limits() -> None:
    """Every balance of every limit up to 400 agrees with the rational definition."""
    for limit in range(0, 401):
        for balance in range(-2, limit + 3):
            assert is_low(balance, limit) == exactly_low(balance, limit), (balance, limit)


@quick
@given(st.integers(0, 10**13), st.integers(-(10**13), 10**13), st.integers(1, 100))
def test_is_low_is_exact_for_huge_figures(limit: int, balance: int, percent: int) -> None:
    """No float rounding, whatever the size of the figures or the percentage."""
    assert is_low(balance, limit, percent) == exactly_low(balance, limit, percent)


@quick
@given(st.integers(1, 10**12))
def test_the_boundary_is_the_smallest_balance_that_is_not_low(limit: int) -> None:
    """The first balance that is not low is ceil(limit / 5); the one below it is low."""
    boundary = -(-limit * LOW_BALANCE_PERCENT // 100)
    assert not is_low(boundary, limit)
    assert is_low(boundary - 1, limit)


# --- evaluate, one step -----------------------------------------------------------


def test_evaluate_every_small_case() -> None:
    """Each step of ``evaluate``, for every alarm state, small limit and balance."""
    for alarms, limit in itertools.product(ALL_ALARMS, range(0, 41)):
        for balance in range(-2, limit + 3):
            notices, after = evaluate(balance=balance, limit=limit, alarms=alarms)
            low_positive = balance > 0 and exactly_low(balance, limit)
            assert len(notices) == len(set(notices)) <= 1, "never two emails at once"
            assert (Notice.DEPLETED in notices) == (
                balance <= 0 and limit > 0 and alarms.depleted_armed
            ), (balance, limit, alarms)
            assert (Notice.LOW_BALANCE in notices) == (low_positive and alarms.low_armed), (
                balance,
                limit,
                alarms,
            )
            if limit == 0:
                assert notices == []
            if balance <= 0:
                assert after == Alarms(low_armed=False, depleted_armed=False)
            elif low_positive:
                assert after == Alarms(low_armed=False, depleted_armed=True)
            else:  # back at 20% or more: both warnings re-armed
                assert after == FRESH


def test_the_boundary_example_with_5000() -> None:
    """Spending down a 5000 limit: nothing at 1000, the warning at 999, nothing more until 0."""
    assert run([5000, 1000], 5000) == [[], []]
    assert run([1000, 999, 500, 1], 5000) == [[], [Notice.LOW_BALANCE], [], []]
    assert run([999, 0, 0], 5000) == [[Notice.LOW_BALANCE], [Notice.DEPLETED], []]


# --- evaluate over sequences --------------------------------------------------------


@st.composite
def descending(draw: st.DrawFn) -> tuple[int, list[int]]:
    limit = draw(st.integers(1, 10**7))
    steps = draw(st.lists(st.integers(0, limit), max_size=40))
    return limit, sorted(steps, reverse=True)


@quick
@given(descending())
def test_spending_down_warns_once_and_depletes_once(case: tuple[int, list[int]]) -> None:
    """However the balance falls, each email is sent at most once, at the first qualifying step."""
    limit, balances = case
    notices = run(balances, limit)
    lows = [i for i, n in enumerate(notices) if Notice.LOW_BALANCE in n]
    depleted = [i for i, n in enumerate(notices) if Notice.DEPLETED in n]
    first_low = next((i for i, b in enumerate(balances) if b > 0 and exactly_low(b, limit)), None)
    first_zero = next((i for i, b in enumerate(balances) if b <= 0), None)
    assert lows == ([] if first_low is None else [first_low])
    assert depleted == ([] if first_zero is None else [first_zero])


@quick
@given(
    st.integers(1, 10**6).flatmap(
        lambda limit: st.tuples(st.just(limit), st.lists(st.integers(0, 2 * limit), max_size=60))
    )
)
def test_any_sequence_warns_only_when_crossing_down(case: tuple[int, list[int]]) -> None:
    """For any path of the balance:

    - the warning fires exactly at a low (but not empty) step whose previous step
      was at 20% or more (or that is the first step): a rise to 20% re-arms it, a
      rise that stays below 20% does not, and reaching zero disarms it;
    - the depleted notice fires exactly when the balance reaches zero from above.
    """
    limit, balances = case
    notices = run(balances, limit)
    for i, (balance, fired) in enumerate(zip(balances, notices, strict=True)):
        previous = balances[i - 1] if i else None
        low_positive = balance > 0 and exactly_low(balance, limit)
        came_from_high = previous is None or not exactly_low(previous, limit)
        assert (Notice.LOW_BALANCE in fired) == (low_positive and came_from_high), (i, balances)
        reached_zero = balance <= 0 and (previous is None or previous > 0)
        assert (Notice.DEPLETED in fired) == reached_zero, (i, balances)


def test_rearm_needs_a_rise_to_twenty_percent() -> None:
    """After the warning, a top-up to 19.98% does not re-arm it; one to exactly 20% does."""
    limit = 5000
    assert run([900, 999, 800], limit) == [[Notice.LOW_BALANCE], [], []]
    assert run([900, 1000, 800], limit) == [[Notice.LOW_BALANCE], [], [Notice.LOW_BALANCE]]


def test_depleted_rearms_when_tokens_return() -> None:
    """Empty → one email; tokens come back → the next time it runs dry emails again."""
    limit = 5000
    assert run([0, 0, 10, 0], limit) == [[Notice.DEPLETED], [], [], [Notice.DEPLETED]]
    # after running dry the low warning stays quiet until the balance is healthy again
    assert run([0, 10, 5, 4000, 900], limit) == [
        [Notice.DEPLETED],
        [],
        [],
        [],
        [Notice.LOW_BALANCE],
    ]


@quick
@given(st.lists(st.integers(-5, 10**6), max_size=40), st.sampled_from(ALL_ALARMS))
def test_no_limit_means_no_notices(balances: list[int], alarms: Alarms) -> None:
    """With nothing granted this month (limit 0) no email is ever sent."""
    assert all(n == [] for n in run(balances, 0, alarms))


@quick
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), max_size=40))
def test_changing_limits_never_send_two_emails_in_one_step(steps: list[tuple[int, int]]) -> None:
    """The limit moves with grants and debits; still at most one email per change."""
    alarms = FRESH
    for balance, limit in steps:
        notices, alarms = evaluate(balance=balance, limit=limit, alarms=alarms)
        assert len(notices) <= 1
        if notices == [Notice.LOW_BALANCE]:
            assert is_low(balance, limit) and balance > 0
        if notices == [Notice.DEPLETED]:
            assert balance == 0 and limit > 0
