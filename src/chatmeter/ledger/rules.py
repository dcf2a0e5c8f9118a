"""Pure token arithmetic: which grants pay for a hold, and where unused tokens go.

No database, no clock: plain values in, plain values out, so that the rules
can be tested exhaustively.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_TOKENS = 10**12  # one operation never moves more than this


@dataclass(frozen=True, slots=True)
class Bucket:
    """A grant as the rules see it."""

    grant_id: int
    remaining: int
    expires_at: dt.datetime | None


def spending_order(buckets: Iterable[Bucket]) -> list[Bucket]:
    """The grant that expires first pays first; grants that never expire pay last."""
    far_future = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(buckets, key=lambda b: (b.expires_at or far_future, b.grant_id))


def allocate(buckets: Iterable[Bucket], amount: int) -> list[tuple[int, int]]:
    """Take ``amount`` tokens from the buckets, soonest-expiring first.

    Returns ``(grant_id, tokens)`` pairs. Raises ``ValueError`` if the buckets
    hold less than ``amount``: the caller checks the balance first.
    """
    if amount <= 0:
        raise ValueError("amount must be positive")
    taken: list[tuple[int, int]] = []
    left = amount
    for bucket in spending_order(buckets):
        if left == 0:
            break
        take = min(bucket.remaining, left)
        if take > 0:
            taken.append((bucket.grant_id, take))
            left -= take
    if left:
        raise ValueError(f"buckets hold {amount - left} tokens, {amount} needed")
    return taken


def give_back(allocations: Sequence[tuple[int, int]], unused: int) -> list[tuple[int, int]]:
    """Return ``unused`` tokens of a hold to the grants it was taken from.

    The hold consumed from the soonest-expiring grants first, so the unused
    part goes back to the grants taken last.
    """
    if unused < 0 or unused > sum(amount for _, amount in allocations):
        raise ValueError("cannot give back more than was taken")
    returned: list[tuple[int, int]] = []
    left = unused
    for grant_id, amount in reversed(allocations):
        if left == 0:
            break
        back = min(amount, left)
        returned.append((grant_id, back))
        left -= back
    return returned


def check_amount(value: object, *, name: str = "tokens", allow_zero: bool = False) -> int:
    """A whole number of tokens within range, or ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number")
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_TOKENS:
        raise ValueError(f"{name} must be between {low} and {MAX_TOKENS:,}")
    return value
