"""When a balance change deserves an email: the 20% warning and the empty one.

The warning fires once when the balance falls below the threshold and is
re-armed only when tokens lift it back to the threshold or above; the
depleted notice fires once at zero and is re-armed when tokens return.

A grant that lifts the balance from zero raises ``RESTORED`` (no email: the
customer's webhooks tell their systems, once after each depletion they were told of;
``notifications.balance_notices`` decides that).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

LOW_BALANCE_PERCENT = 20


class Notice(StrEnum):
    LOW_BALANCE = "low_balance"
    DEPLETED = "depleted"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class BalanceNotice:
    """A threshold the balance crossed, with the figures at that moment.

    The ledger raises these; it does not send them. The caller hands them to
    ``notifications.balance_notices`` in the same transaction (``take_notices``).
    """

    account_id: int
    notice: Notice
    seq: int  # the account's count of notices so far: each email's own dedupe key
    balance: int
    available: int
    period_granted: int
    period: str | None


@dataclass(frozen=True, slots=True)
class Level:
    """An account's balance after a transaction's changes, and the month it is in."""

    balance: int
    period: str | None


@dataclass(frozen=True, slots=True)
class Alarms:
    low_armed: bool
    depleted_armed: bool


def is_low(balance: int, limit: int, percent: int = LOW_BALANCE_PERCENT) -> bool:
    """Below ``percent`` of the limit, in exact integer arithmetic."""
    return limit > 0 and balance * 100 < limit * percent


def restored(before: int, after: int) -> bool:
    """Tokens came back: the balance was zero (or less) and is not any more."""
    return before <= 0 < after


def evaluate(
    *, balance: int, limit: int, alarms: Alarms, percent: int = LOW_BALANCE_PERCENT
) -> tuple[list[Notice], Alarms]:
    """The notices due after a change that left ``balance`` of ``limit``, and the new alarms."""
    notices: list[Notice] = []
    low_armed, depleted_armed = alarms.low_armed, alarms.depleted_armed
    if balance <= 0:
        if depleted_armed and limit > 0:
            notices.append(Notice.DEPLETED)
        depleted_armed = False
        # Running dry covers the warning too: nobody needs both emails at once.
        low_armed = False
    elif is_low(balance, limit, percent):
        if low_armed:
            notices.append(Notice.LOW_BALANCE)
            low_armed = False
        depleted_armed = True
    else:
        low_armed = True
        depleted_armed = True
    return notices, Alarms(low_armed=low_armed, depleted_armed=depleted_armed)
