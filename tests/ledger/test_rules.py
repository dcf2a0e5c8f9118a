"""Properties of the pure token arithmetic in ``chatmeter.ledger.rules``.

These rules decide which grants pay for a hold and where unused tokens go
back to. They run under the account's lock on every chat turn, so they are
tested here exhaustively with generated grants rather than by example.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import Counter
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from chatmeter.ledger.rules import (
    MAX_TOKENS,
    Bucket,
    allocate,
    check_amount,
    give_back,
    spending_order,
)

BASE = dt.datetime(2026, 11, 15, tzinfo=dt.UTC)
NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)

# A handful of expiry instants so that ties (same expiry, different grants) are common.
expiries = st.one_of(
    st.none(),
    st.sampled_from([BASE + dt.timedelta(days=d) for d in (1, 2, 16, 45)]),
    st.integers(0, 10**8).map(lambda s: BASE + dt.timedelta(seconds=s)),
)


@st.composite
def bucket_lists(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 8) -> list[Bucket]:
    ids = draw(st.lists(st.integers(1, 10**9), min_size=min_size, max_size=max_size, unique=True))
    return [
        Bucket(grant_id, draw(st.integers(0, 10_000) | st.integers(0, MAX_TOKENS)), draw(expiries))
        for grant_id in ids
    ]


@st.composite
def buckets_and_amount(draw: st.DrawFn) -> tuple[list[Bucket], int]:
    buckets = draw(bucket_lists(min_size=1))
    total = sum(b.remaining for b in buckets)
    assume(total > 0)
    return buckets, draw(st.integers(1, total))


def expiry_key(bucket: Bucket) -> tuple[dt.datetime, int]:
    return (bucket.expires_at or NEVER, bucket.grant_id)


quick = settings(max_examples=200, deadline=None, database=None)


# --- spending_order -------------------------------------------------------------


@quick
@given(bucket_lists())
def test_spending_order_is_soonest_first_never_last_ties_by_id(buckets: list[Bucket]) -> None:
    """The grant that expires first pays first; grants without expiry pay last; ties by id."""
    ordered = spending_order(buckets)
    assert Counter(ordered) == Counter(buckets)  # a permutation: nothing lost or invented
    for earlier, later in itertools.pairwise(ordered):
        if earlier.expires_at is None:
            assert later.expires_at is None, "a never-expiring grant came before an expiring one"
            assert earlier.grant_id < later.grant_id
        elif later.expires_at is not None:
            assert (earlier.expires_at, earlier.grant_id) < (later.expires_at, later.grant_id)


@quick
@given(bucket_lists(), st.randoms(use_true_random=False))
def test_spending_order_does_not_depend_on_input_order(
    buckets: list[Bucket], rnd: random.Random
) -> None:
    """The order grants are read from the database in changes nothing."""
    shuffled = list(buckets)
    rnd.shuffle(shuffled)
    assert spending_order(shuffled) == spending_order(buckets)


def test_spending_order_example() -> None:
    """A worked example: soon, then late, then the two never-expiring grants by id."""
    never_b, never_a = Bucket(9, 1, None), Bucket(3, 1, None)
    late = Bucket(1, 1, BASE + dt.timedelta(days=20))
    soon = Bucket(7, 1, BASE + dt.timedelta(days=2))
    tie = Bucket(2, 1, BASE + dt.timedelta(days=2))
    ordered = spending_order([never_b, late, never_a, soon, tie])
    assert ordered == [tie, soon, late, never_a, never_b]


def test_spending_order_compares_instants_not_wall_clocks() -> None:
    """Expiries in different UTC offsets are ordered by the instant they denote."""
    plus_two = dt.timezone(dt.timedelta(hours=2))
    earlier = Bucket(2, 1, dt.datetime(2026, 12, 1, 1, 0, tzinfo=plus_two))  # 23:00 UTC Nov 30
    later = Bucket(1, 1, dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC))
    assert spending_order([later, earlier]) == [earlier, later]


# --- allocate ---------------------------------------------------------------------


@quick
@given(buckets_and_amount())
@example(([Bucket(1, 5, None)], 5))
@example(([Bucket(1, 0, None), Bucket(2, 3, None)], 3))
def test_allocate_takes_exactly_the_amount_and_never_more_than_a_bucket_holds(
    case: tuple[list[Bucket], int],
) -> None:
    """A hold takes exactly what it asks for, only from grants that hold it, each grant once."""
    buckets, amount = case
    taken = allocate(buckets, amount)
    holds = {b.grant_id: b.remaining for b in buckets}
    assert sum(tokens for _, tokens in taken) == amount
    assert len({grant_id for grant_id, _ in taken}) == len(taken), "a grant was taken twice"
    for grant_id, tokens in taken:
        assert grant_id in holds
        assert 0 < tokens <= holds[grant_id]


@quick
@given(buckets_and_amount())
def test_allocate_drains_the_soonest_expiring_grants_first(case: tuple[list[Bucket], int]) -> None:
    """Every grant before the last one touched is emptied; no grant after it is touched."""
    buckets, amount = case
    taken = dict(allocate(buckets, amount))
    order = [b for b in spending_order(buckets) if b.remaining > 0]
    touched = [b for b in order if b.grant_id in taken]
    assert touched == order[: len(touched)], "a later grant paid while an earlier one had tokens"
    for bucket in touched[:-1]:
        assert taken[bucket.grant_id] == bucket.remaining
    # and the pairs come back in spending order
    assert [gid for gid, _ in allocate(buckets, amount)] == [b.grant_id for b in touched]


@quick
@given(buckets_and_amount(), st.randoms(use_true_random=False))
def test_allocate_does_not_depend_on_input_order(
    case: tuple[list[Bucket], int], rnd: random.Random
) -> None:
    """The order grants are read from the database in changes nothing."""
    buckets, amount = case
    shuffled = list(buckets)
    rnd.shuffle(shuffled)
    assert allocate(shuffled, amount) == allocate(buckets, amount)


@quick
@given(bucket_lists(), st.integers(1, 10**6))
def test_allocate_refuses_more_than_the_buckets_hold(buckets: list[Bucket], extra: int) -> None:
    """Asking for more than all grants hold is an error, never a partial allocation."""
    total = sum(b.remaining for b in buckets)
    with pytest.raises(ValueError):
        allocate(buckets, total + extra)


@pytest.mark.parametrize("amount", [0, -1, -(10**6)])
def test_allocate_refuses_a_non_positive_amount(amount: int) -> None:
    """A hold of zero or fewer tokens is a caller's mistake, not an empty allocation."""
    with pytest.raises(ValueError):
        allocate([Bucket(1, 100, None)], amount)


def test_allocate_accepts_any_iterable_once() -> None:
    """Buckets may come from a generator: the rules read them exactly once."""
    buckets = (Bucket(i, 10, None) for i in (3, 1, 2))
    assert allocate(buckets, 25) == [(1, 10), (2, 10), (3, 5)]


def test_allocate_worked_example() -> None:
    """Soonest expiry first, the never-expiring grant last."""
    soon = Bucket(5, 100, BASE + dt.timedelta(days=2))
    late = Bucket(4, 100, BASE + dt.timedelta(days=20))
    never = Bucket(1, 100, None)
    assert allocate([never, late, soon], 150) == [(5, 100), (4, 50)]
    assert allocate([never, late, soon], 300) == [(5, 100), (4, 100), (1, 100)]


# --- give_back --------------------------------------------------------------------


@st.composite
def allocations_and_unused(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int]:
    buckets, amount = draw(buckets_and_amount())
    taken = allocate(buckets, amount)
    return taken, draw(st.integers(0, amount))


@quick
@given(allocations_and_unused())
def test_give_back_returns_exactly_unused_and_never_more_than_taken(
    case: tuple[list[tuple[int, int]], int],
) -> None:
    """Unused tokens go back to the grants they came from, never more than each gave."""
    taken, unused = case
    returned = give_back(taken, unused)
    gave = dict(taken)
    assert sum(back for _, back in returned) == unused
    assert len({gid for gid, _ in returned}) == len(returned)
    for grant_id, back in returned:
        assert grant_id in gave
        assert 0 < back <= gave[grant_id]


@quick
@given(allocations_and_unused())
def test_give_back_goes_to_the_last_taken_grant_first(
    case: tuple[list[tuple[int, int]], int],
) -> None:
    """The hold drained the soonest-expiring grants; the latest-expiring get tokens back first."""
    taken, unused = case
    returned = give_back(taken, unused)
    backwards = list(reversed(taken))
    assert [gid for gid, _ in returned] == [gid for gid, _ in backwards[: len(returned)]]
    for (gid, back), (_, gave) in zip(returned[:-1], backwards, strict=False):
        assert back == gave, f"grant {gid} was only partly refilled before an earlier one"


@quick
@given(allocations_and_unused())
def test_allocating_then_giving_everything_back_is_identity(
    case: tuple[list[tuple[int, int]], int],
) -> None:
    taken, _ = case
    total = sum(t for _, t in taken)
    assert sorted(give_back(taken, total)) == sorted(taken)
    assert give_back(taken, 0) == []


@quick
@given(allocations_and_unused(), st.integers(1, 10**6))
def test_give_back_refuses_more_than_was_taken(
    case: tuple[list[tuple[int, int]], int], extra: int
) -> None:
    taken, _ = case
    total = sum(t for _, t in taken)
    with pytest.raises(ValueError):
        give_back(taken, total + extra)
    with pytest.raises(ValueError):
        give_back(taken, -extra)


def test_give_back_worked_example() -> None:
    """Took 100 from the soon grant and 50 from the late one; 90 unused go to late, then soon."""
    assert give_back([(5, 100), (4, 50)], 90) == [(4, 50), (5, 40)]
    assert give_back([(5, 100), (4, 50)], 30) == [(4, 30)]
    assert give_back([], 0) == []
    with pytest.raises(ValueError):
        give_back([], 1)


# --- check_amount -----------------------------------------------------------------


@quick
@given(st.integers(1, MAX_TOKENS), st.booleans())
def test_check_amount_accepts_whole_numbers_in_range(value: int, allow_zero: bool) -> None:
    """Every whole number from 1 to MAX_TOKENS is a valid amount, returned unchanged."""
    assert check_amount(value, allow_zero=allow_zero) == value


def test_check_amount_bounds() -> None:
    """Zero only when allowed; MAX_TOKENS is the largest accepted amount."""
    assert check_amount(0, allow_zero=True) == 0
    assert check_amount(MAX_TOKENS) == MAX_TOKENS
    for bad in (0, -1, MAX_TOKENS + 1):
        with pytest.raises(ValueError):
            check_amount(bad)
    for bad in (-1, MAX_TOKENS + 1):
        with pytest.raises(ValueError):
            check_amount(bad, allow_zero=True)


@pytest.mark.parametrize(
    "bad",
    [
        True,
        False,
        1.0,
        1.5,
        "1",
        "12",
        None,
        b"1",
        Decimal("5"),
        Fraction(5),
        [5],
        float("nan"),
        float("inf"),
    ],
)
def test_check_amount_refuses_anything_but_an_int(bad: object) -> None:
    """Booleans, floats, text and numbers of other types are refused, even when they look whole."""
    with pytest.raises(ValueError):
        check_amount(bad)
    with pytest.raises(ValueError):
        check_amount(bad, allow_zero=True)


@quick
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_TOKENS + 1)))
def test_check_amount_refuses_out_of_range(value: int) -> None:
    """Nothing below 1 or above MAX_TOKENS."""
    with pytest.raises(ValueError):
        check_amount(value)


def test_check_amount_names_the_field_in_its_message() -> None:
    """The error says which figure was wrong."""
    with pytest.raises(ValueError, match="generation"):
        check_amount(-1, name="generation", allow_zero=True)
