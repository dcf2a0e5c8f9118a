"""Recompute every account from its ledger entries and report any difference.

Checked for each account:

- the entries chain: each entry's ``*_after`` equals the running sum of deltas;
- the cached balance row equals what the entries add up to;
- available tokens equal what the live grants still hold;
- reserved tokens equal the pending holds, and each hold's allocations add up;
- tokens are conserved: everything granted is available, reserved, spent,
  expired or removed by a debit;
- nothing is negative.

The assistants' monthly caps are checked on top of this by ``chat.caps.verify``
(what ``chatmeter ledger verify`` runs): the ledger knows accounts, not assistants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatmeter.ledger.models import (
    Balance,
    EntryKind,
    Grant,
    Hold,
    HoldAllocation,
    HoldStatus,
    LedgerEntry,
)


@dataclass
class AccountReport:
    account_id: int
    available: int
    reserved: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, *, account_id: int | None = None) -> list[AccountReport]:
    query = select(Balance).order_by(Balance.account_id)
    if account_id is not None:
        query = query.where(Balance.account_id == account_id)
    return [_verify_account(session, balance) for balance in session.scalars(query)]


def _verify_account(session: Session, balance: Balance) -> AccountReport:
    report = AccountReport(balance.account_id, balance.available, balance.reserved)
    problems = report.problems
    available = reserved = granted = spent = expired = debited = 0
    entries = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.account_id == balance.account_id)
        .order_by(LedgerEntry.id)
    )
    for entry in entries:
        available += entry.available_delta
        reserved += entry.reserved_delta
        if (entry.available_after, entry.reserved_after) != (available, reserved):
            problems.append(
                f"entry {entry.id}: records {entry.available_after}/{entry.reserved_after} "
                f"after it, the entries add up to {available}/{reserved}"
            )
            available, reserved = entry.available_after, entry.reserved_after
        if available < 0 or reserved < 0:
            problems.append(f"entry {entry.id}: balance below zero ({available}/{reserved})")
        if entry.kind == EntryKind.GRANT:
            granted += entry.available_delta
        elif entry.kind == EntryKind.DEBIT:
            debited -= entry.available_delta
        spent += entry.consumed
        expired += entry.expired
        if entry.consumed != entry.context_tokens + entry.generation_tokens:
            problems.append(f"entry {entry.id}: spent {entry.consumed} is not context+generation")

    if (balance.available, balance.reserved) != (available, reserved):
        problems.append(
            f"balance row says {balance.available} available/{balance.reserved} reserved, "
            f"the entries add up to {available}/{reserved}"
        )
    in_grants = session.scalar(
        select(func.coalesce(func.sum(Grant.remaining), 0)).where(
            Grant.account_id == balance.account_id, Grant.expired_at.is_(None)
        )
    )
    if in_grants != available:
        problems.append(f"live grants hold {in_grants}, the entries say {available} available")
    total_granted = session.scalar(
        select(func.coalesce(func.sum(Grant.amount), 0)).where(
            Grant.account_id == balance.account_id
        )
    )
    if total_granted != granted:
        problems.append(f"grants total {total_granted}, grant entries total {granted}")
    held = session.scalar(
        select(func.coalesce(func.sum(Hold.amount), 0)).where(
            Hold.account_id == balance.account_id, Hold.status == HoldStatus.PENDING
        )
    )
    if held != reserved:
        problems.append(f"pending holds hold {held}, the entries say {reserved} reserved")
    mismatched = session.scalars(
        select(Hold.id)
        .outerjoin(HoldAllocation, HoldAllocation.hold_id == Hold.id)
        .where(Hold.account_id == balance.account_id)
        .group_by(Hold.id, Hold.amount)
        .having(func.coalesce(func.sum(HoldAllocation.amount), 0) != Hold.amount)
    ).all()
    for hold_id in mismatched:
        problems.append(f"hold {hold_id}: allocations do not add up to its amount")
    accounted = available + reserved + spent + expired + debited
    if accounted != granted:
        problems.append(
            f"granted {granted} but available+reserved+spent+expired+debited = {accounted}"
        )
    return report
