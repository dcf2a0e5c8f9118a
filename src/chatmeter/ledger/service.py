"""The ledger's verbs: grant, debit, reserve, settle, release and expire.

Every verb takes the account's lock first (``lock_balance``), checks, then
writes immutable entries and updates the cached balance in the same
transaction. None of them commits: the caller's unit of work does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.errors import (
    Conflict,
    IdempotencyConflict,
    InsufficientTokens,
    InvalidInput,
    NotFound,
)
from chatmeter.idempotency import check_key
from chatmeter.ledger import rules, thresholds
from chatmeter.ledger.models import (
    Balance,
    EntryKind,
    Grant,
    GrantSource,
    Hold,
    HoldAllocation,
    HoldStatus,
    LedgerEntry,
)

MAX_HOLD_TTL_SECONDS = 86_400


def open_balance(session: Session, *, account_id: int) -> Balance:
    """Create the empty balance row of a new account."""
    balance = Balance(
        account_id=account_id,
        available=0,
        reserved=0,
        period_granted=0,
        low_armed=True,
        depleted_armed=True,
        notice_seq=0,
    )
    session.add(balance)
    session.flush()
    return balance


def lock_balance(session: Session, *, account_id: int) -> Balance:
    """The account's balance row, locked until the transaction ends.

    PostgreSQL takes a row lock; SQLite's writing transactions already hold
    the database lock (``BEGIN IMMEDIATE``).
    """
    balance = session.scalar(
        select(Balance)
        .where(Balance.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if balance is None:
        raise NotFound("no such account", account_id=account_id)
    return balance


def grant(
    session: Session,
    *,
    account_id: int,
    amount: int,
    source: GrantSource,
    key: str,
    period: str,
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
    invoice_id: int | None = None,
    memo: str = "",
) -> Grant:
    """Add tokens. ``period`` is the account's current month; the grant counts toward its limit."""
    amount = _amount(amount)
    key = check_key(key)
    balance = lock_balance(session, account_id=account_id)
    existing = session.scalar(select(Grant).where(Grant.account_id == account_id, Grant.key == key))
    if existing is not None:
        if (existing.amount, existing.source, existing.expires_at) != (amount, source, expires_at):
            raise IdempotencyConflict("this key was already used for a different grant", key=key)
        return existing
    _enter_period(balance, period)
    new = Grant(
        account_id=account_id,
        key=key,
        source=source,
        amount=amount,
        remaining=amount,
        period=period,
        expires_at=expires_at,
        invoice_id=invoice_id,
        memo=memo[:500],
        created_at=now,
    )
    session.add(new)
    session.flush()
    balance.period_granted += amount
    _record(
        session, balance, EntryKind.GRANT, now, available_delta=amount, grant_id=new.id, memo=memo
    )
    _after_change(session, balance, now)
    return new


def debit(
    session: Session, *, account_id: int, amount: int, period: str, now: dt.datetime, memo: str = ""
) -> LedgerEntry:
    """Remove available tokens (an operator's correction), soonest-expiring first."""
    amount = _amount(amount)
    balance = lock_balance(session, account_id=account_id)
    if balance.available < amount:
        raise InsufficientTokens(
            f"only {balance.available:,} tokens are available to remove",
            available=balance.available,
        )
    _enter_period(balance, period)
    grants = _live_grants(session, account_id)
    by_id = {g.id: g for g in grants}
    for grant_id, taken in rules.allocate(_buckets(grants), amount):
        by_id[grant_id].remaining -= taken
    balance.period_granted = max(0, balance.period_granted - amount)
    entry = _record(session, balance, EntryKind.DEBIT, now, available_delta=-amount, memo=memo)
    _after_change(session, balance, now)
    return entry


def reserve(
    session: Session,
    *,
    account_id: int,
    tokens: int,
    key: str,
    ttl_seconds: int,
    now: dt.datetime,
) -> Hold:
    """Hold ``tokens`` for a chat turn, or raise ``InsufficientTokens``.

    The balance check happens here, under the account's lock, so any number
    of concurrent reservations can never hold more than is available.
    """
    tokens = _amount(tokens)
    key = check_key(key)
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int)
        or not (1 <= ttl_seconds <= MAX_HOLD_TTL_SECONDS)
    ):
        raise InvalidInput(f"ttl_seconds must be a whole number from 1 to {MAX_HOLD_TTL_SECONDS}")
    balance = lock_balance(session, account_id=account_id)
    existing = session.scalar(select(Hold).where(Hold.account_id == account_id, Hold.key == key))
    if existing is not None:
        same_ttl = existing.expires_at - existing.created_at == dt.timedelta(seconds=ttl_seconds)
        if existing.amount != tokens or not same_ttl:
            raise IdempotencyConflict("this key was already used for a different hold", key=key)
        return existing
    if balance.available < tokens:
        raise InsufficientTokens(
            "not enough tokens available", available=balance.available, requested=tokens
        )
    grants = _live_grants(session, account_id)
    by_id = {g.id: g for g in grants}
    allocations = rules.allocate(_buckets(grants), tokens)
    hold = Hold(
        account_id=account_id,
        key=key,
        amount=tokens,
        status=HoldStatus.PENDING,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )
    session.add(hold)
    session.flush()
    for grant_id, taken in allocations:
        by_id[grant_id].remaining -= taken
        session.add(HoldAllocation(hold_id=hold.id, grant_id=grant_id, amount=taken))
    _record(
        session,
        balance,
        EntryKind.RESERVE,
        now,
        available_delta=-tokens,
        reserved_delta=tokens,
        hold_id=hold.id,
    )
    return hold


def settle(
    session: Session,
    *,
    account_id: int,
    hold_id: int,
    context: int,
    generation: int,
    now: dt.datetime,
) -> Hold:
    """Spend ``context + generation`` tokens of a hold (at most what it holds); free the rest."""
    context = _amount(context, name="context", allow_zero=True)
    generation = _amount(generation, name="generation", allow_zero=True)
    balance = lock_balance(session, account_id=account_id)
    hold = _get_hold(session, account_id, hold_id)
    if hold.status == HoldStatus.SETTLED:
        if (hold.context_tokens, hold.generation_tokens) != (context, generation):
            raise IdempotencyConflict(
                "this hold was already settled with other figures", hold_id=hold_id
            )
        return hold
    if hold.status != HoldStatus.PENDING:
        raise Conflict(f"this hold was already {hold.status}", hold_id=hold_id)
    used = context + generation
    if used > hold.amount:
        raise InvalidInput(
            f"cannot settle {used:,} tokens on a hold of {hold.amount:,}",
            held=hold.amount,
            settled=used,
        )
    hold.status = HoldStatus.SETTLED
    hold.context_tokens = context
    hold.generation_tokens = generation
    hold.finished_at = now
    _close_hold(
        session,
        balance,
        hold,
        EntryKind.SETTLE,
        now,
        used=used,
        context=context,
        generation=generation,
    )
    return hold


def release(session: Session, *, account_id: int, hold_id: int, now: dt.datetime) -> Hold:
    """Give all of a hold's tokens back."""
    balance = lock_balance(session, account_id=account_id)
    hold = _get_hold(session, account_id, hold_id)
    if hold.status == HoldStatus.RELEASED:
        return hold
    if hold.status != HoldStatus.PENDING:
        raise Conflict(f"this hold was already {hold.status}", hold_id=hold_id)
    hold.status = HoldStatus.RELEASED
    hold.finished_at = now
    _close_hold(session, balance, hold, EntryKind.RELEASE, now, used=0)
    return hold


def expire_holds(session: Session, *, now: dt.datetime, limit: int = 500) -> int:
    """Release holds whose time ran out (a chat that crashed before settling)."""
    due = session.execute(
        select(Hold.account_id, Hold.id)
        .where(Hold.status == HoldStatus.PENDING, Hold.expires_at <= now)
        .order_by(Hold.account_id, Hold.id)
        .limit(limit)
    ).all()
    expired = 0
    for account_id, hold_id in due:  # ordered by account: locks are taken in one order
        balance = lock_balance(session, account_id=account_id)
        hold = _get_hold(session, account_id, hold_id)
        if hold.status != HoldStatus.PENDING:  # settled meanwhile
            continue
        hold.status = HoldStatus.EXPIRED
        hold.finished_at = now
        _close_hold(session, balance, hold, EntryKind.HOLD_EXPIRY, now, used=0)
        expired += 1
    return expired


def expire_grants(
    session: Session, *, account_id: int, due_by: dt.datetime, now: dt.datetime
) -> int:
    """Expire the grants due by ``due_by``; returns how many tokens expired."""
    balance = lock_balance(session, account_id=account_id)
    total = 0
    for live in _live_grants(session, account_id, include_empty=True):
        if live.expires_at is None or live.expires_at > due_by:
            continue
        left = live.remaining
        live.remaining = 0
        live.expired_at = now
        total += left
        if left:
            _record(
                session,
                balance,
                EntryKind.GRANT_EXPIRY,
                now,
                available_delta=-left,
                expired=left,
                grant_id=live.id,
            )
    if total:
        _after_change(session, balance, now)
    return total


def start_period(session: Session, *, account_id: int, period: str) -> Balance:
    """Begin a new month: its limit starts from zero and both alarms are re-armed."""
    balance = lock_balance(session, account_id=account_id)
    _enter_period(balance, period)
    return balance


# --- internals -------------------------------------------------------------


def _amount(value: object, *, name: str = "tokens", allow_zero: bool = False) -> int:
    try:
        return rules.check_amount(value, name=name, allow_zero=allow_zero)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=name) from exc


def _enter_period(balance: Balance, period: str) -> None:
    if balance.period is None or period > balance.period:
        balance.period = period
        balance.period_granted = 0
        balance.low_armed = True
        balance.depleted_armed = True


def _live_grants(session: Session, account_id: int, *, include_empty: bool = False) -> list[Grant]:
    query = select(Grant).where(Grant.account_id == account_id, Grant.expired_at.is_(None))
    if not include_empty:
        query = query.where(Grant.remaining > 0)
    return list(session.scalars(query.order_by(Grant.id)))


def _buckets(grants: Sequence[Grant]) -> list[rules.Bucket]:
    return [rules.Bucket(g.id, g.remaining, g.expires_at) for g in grants]


def _get_hold(session: Session, account_id: int, hold_id: int) -> Hold:
    hold = session.get(Hold, hold_id, populate_existing=True)
    if hold is None or hold.account_id != account_id:
        raise NotFound("no such hold", hold_id=hold_id)
    return hold


def _close_hold(
    session: Session,
    balance: Balance,
    hold: Hold,
    kind: EntryKind,
    now: dt.datetime,
    *,
    used: int,
    context: int = 0,
    generation: int = 0,
) -> None:
    """Return a closing hold's unused tokens to their grants; expired grants keep none."""
    rows = session.execute(
        select(HoldAllocation.amount, Grant)
        .join(Grant, Grant.id == HoldAllocation.grant_id)
        .where(HoldAllocation.hold_id == hold.id)
    ).all()
    grants = {grant.id: grant for _, grant in rows}
    order = rules.spending_order(rules.Bucket(g.id, 0, g.expires_at) for g in grants.values())
    amounts = {grant.id: amount for amount, grant in rows}
    allocations = [(b.grant_id, amounts[b.grant_id]) for b in order]
    returned_live = expired = 0
    for grant_id, back in rules.give_back(allocations, hold.amount - used):
        target = grants[grant_id]
        if target.expired_at is None:
            target.remaining += back
            returned_live += back
        else:  # the month ended while the chat ran: its unused tokens end with it
            expired += back
    _record(
        session,
        balance,
        kind,
        now,
        available_delta=returned_live,
        reserved_delta=-hold.amount,
        consumed=used,
        context_tokens=context,
        generation_tokens=generation,
        expired=expired,
        hold_id=hold.id,
    )
    _after_change(session, balance, now)


def _record(
    session: Session,
    balance: Balance,
    kind: EntryKind,
    now: dt.datetime,
    *,
    available_delta: int,
    reserved_delta: int = 0,
    **fields: object,
) -> LedgerEntry:
    available = balance.available + available_delta
    reserved = balance.reserved + reserved_delta
    if available < 0 or reserved < 0:  # the lock makes this unreachable
        raise AssertionError(f"ledger invariant broken for account {balance.account_id}")
    entry = LedgerEntry(
        account_id=balance.account_id,
        kind=kind,
        available_delta=available_delta,
        reserved_delta=reserved_delta,
        available_after=available,
        reserved_after=reserved,
        created_at=now,
        **fields,
    )
    session.add(entry)
    session.flush()  # the entry's id; the balance row is written once, at commit
    balance.available, balance.reserved, balance.last_entry_id = available, reserved, entry.id
    return entry


def _after_change(session: Session, balance: Balance, now: dt.datetime) -> None:
    notices, alarms = thresholds.evaluate(
        balance=balance.balance,
        limit=balance.period_granted,
        alarms=thresholds.Alarms(balance.low_armed, balance.depleted_armed),
    )
    balance.low_armed, balance.depleted_armed = alarms.low_armed, alarms.depleted_armed
    if not notices:
        return
    from chatmeter.notifications import balance_notices  # the outbox, in this transaction

    for notice in notices:
        balance.notice_seq += 1
        balance_notices.queue(session, balance=balance, notice=notice, now=now)
