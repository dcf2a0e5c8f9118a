"""The ledger's verbs: grant, debit, reserve, settle, release, extend and expire.

Every verb takes the account's lock first (``lock_balance``), checks, then
writes immutable entries and updates the cached balance in the same
transaction. None of them commits: the caller's unit of work does.

A verb that takes the balance across a threshold raises a ``BalanceNotice``
and keeps it with the session; the caller takes it (``take_notices``) and
hands it to notifications before committing. The ledger sends nothing itself.

``reserve`` and ``settle`` run on every chat turn, so they (and ``release``
and ``expire_holds``, which share their code) use prebuilt Core statements
instead of the ORM's unit of work, whose flushes cost several times what the
database itself spends, and send as few statements as they can while the
balance row is locked: on a busy account every turn queues for that lock,
held until COMMIT. They still return the session's ``Hold`` instances, and
expire the session's instances of the other rows they change, so that those
are read again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.errors import (
    Conflict,
    HoldNotYours,
    IdempotencyConflict,
    InsufficientTokens,
    InvalidInput,
    NotFound,
)
from chatmeter.idempotency import check_key
from chatmeter.ledger import rules, statements, thresholds
from chatmeter.ledger.models import (
    Balance,
    EntryKind,
    Grant,
    GrantSource,
    Hold,
    HoldOwner,
    HoldStatus,
    LedgerEntry,
)
from chatmeter.ledger.thresholds import BalanceNotice, Level, Notice

MAX_HOLD_TTL_SECONDS = 86_400
# Where the notices raised in a transaction wait for the caller (``Session.info``).
_NOTICES = "chatmeter.ledger.notices"
# Each changed account's balance after the transaction's last change, for auto top-up
# (``take_levels``; ``billing.topups``).
_LEVELS = "chatmeter.ledger.levels"


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
    last_period: str | None = None,
) -> Grant:
    """Add tokens. ``period`` is the account's current month; the grant counts toward its limit.

    ``last_period``: a monthly grant whose unused tokens roll over stays live until the
    renewal after that month (``expire_grants``); by default its own month's.
    """
    amount = _amount(amount)
    key = check_key(key)
    if last_period is not None and last_period < period:
        raise InvalidInput("a grant cannot end before the month it is for", field="last_period")
    balance = lock_balance(session, account_id=account_id)
    existing = session.scalar(select(Grant).where(Grant.account_id == account_id, Grant.key == key))
    if existing is not None:
        if (existing.amount, existing.source, existing.expires_at, existing.last_period) != (
            amount,
            source,
            expires_at,
            last_period,
        ):
            raise IdempotencyConflict("this key was already used for a different grant", key=key)
        return existing
    before = balance.balance
    _enter_period(balance, period)
    new = Grant(
        account_id=account_id,
        key=key,
        source=source,
        amount=amount,
        remaining=amount,
        period=period,
        last_period=last_period,
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
    _after_change(session, balance)
    if thresholds.restored(before, balance.balance):
        _raise(session, balance, Notice.RESTORED)
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
    _after_change(session, balance)
    return entry


def revoke(
    session: Session,
    *,
    account_id: int,
    grant_id: int,
    now: dt.datetime,
    memo: str = "",
    at_most: int | None = None,
) -> int:
    """Remove what is left of one grant (the unspent tokens of a refunded invoice), or
    ``at_most`` that many of them (a partly refunded one).

    Only the grant's own remaining tokens go, so the balance never falls below zero,
    and a second call finds nothing left and removes nothing. Returns the tokens removed.
    """
    balance = lock_balance(session, account_id=account_id)
    grant = session.get(Grant, grant_id, populate_existing=True)
    if grant is None or grant.account_id != account_id:
        raise NotFound("no such grant", grant_id=grant_id)
    amount = grant.remaining if grant.expired_at is None else 0
    if at_most is not None:
        amount = min(amount, max(0, at_most))
    if amount == 0:
        return 0
    grant.remaining -= amount
    balance.period_granted = max(0, balance.period_granted - amount)
    _record(
        session,
        balance,
        EntryKind.DEBIT,
        now,
        available_delta=-amount,
        grant_id=grant.id,
        memo=memo,
    )
    _after_change(session, balance)
    return amount


def reserve(
    session: Session,
    *,
    account_id: int,
    tokens: int,
    key: str,
    ttl_seconds: int,
    now: dt.datetime,
    owner: HoldOwner = HoldOwner.API,
) -> Hold:
    """Hold ``tokens`` for a chat turn, or raise ``InsufficientTokens``.

    The balance check happens here, under the account's lock, so any number
    of concurrent reservations can never hold more than is available. Only
    ``owner`` may settle or release the hold (``HoldOwner``).
    """
    tokens = _amount(tokens)
    key = check_key(key)
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int)
        or not (1 <= ttl_seconds <= MAX_HOLD_TTL_SECONDS)
    ):
        raise InvalidInput(f"ttl_seconds must be a whole number from 1 to {MAX_HOLD_TTL_SECONDS}")
    sql = statements.core(session)
    balance = statements.lock(sql, account_id)
    hold = {
        "account_id": account_id,
        "key": key,
        "amount": tokens,
        "owner": owner,
        "ttl_seconds": ttl_seconds,
        "status": HoldStatus.PENDING,
        "context_tokens": None,
        "generation_tokens": None,
        "created_at": now,
        "expires_at": now + dt.timedelta(seconds=ttl_seconds),
        "finished_at": None,
    }
    # Inserting the hold is also the idempotency check: it writes nothing if the key was used.
    hold_id, live = (
        statements.insert_hold_reading_grants(sql, hold)
        if balance.available >= tokens
        else (None, [])
    )
    if hold_id is None:  # the key was used before, or the tokens are not there
        existing = session.scalar(
            select(Hold).where(Hold.account_id == account_id, Hold.key == key)
        )
        if existing is None:
            raise InsufficientTokens(
                "not enough tokens available", available=balance.available, requested=tokens
            )
        if (existing.amount, existing.owner, existing.ttl_seconds) != (tokens, owner, ttl_seconds):
            raise IdempotencyConflict("this key was already used for a different hold", key=key)
        return existing
    allocations = rules.allocate(live, tokens)
    entry = _entry(balance, EntryKind.RESERVE, now, -tokens, tokens, {"hold_id": hold_id})
    _moved(balance, entry)
    statements.save(
        session,
        sql,
        balance,
        entry,
        grants=[(grant_id, -taken) for grant_id, taken in allocations],
        allocations=(hold_id, allocations),
    )
    return statements.as_hold(session, {"id": hold_id, **hold})


def settle(
    session: Session,
    *,
    account_id: int,
    hold_id: int,
    context: int,
    generation: int,
    now: dt.datetime,
    owner: HoldOwner = HoldOwner.API,
) -> Hold:
    """Spend ``context + generation`` tokens of a hold (at most what it holds); free the rest."""
    context = _amount(context, name="context", allow_zero=True)
    generation = _amount(generation, name="generation", allow_zero=True)
    closed = _close_hold(
        session,
        account_id=account_id,
        hold_id=hold_id,
        status=HoldStatus.SETTLED,
        kind=EntryKind.SETTLE,
        now=now,
        owner=owner,
        context=context,
        generation=generation,
    )
    if closed is not None:
        return closed
    # Not pending, not the caller's, or smaller than what was used: say which, as a
    # first attempt would.
    hold = _get_hold(session, account_id, hold_id)
    _check_owner(hold, owner)
    if hold.status == HoldStatus.SETTLED:
        if (hold.context_tokens, hold.generation_tokens) != (context, generation):
            raise IdempotencyConflict(
                "this hold was already settled with other figures", hold_id=hold_id
            )
        return hold
    if hold.status != HoldStatus.PENDING:
        raise Conflict(f"this hold was already {hold.status}", hold_id=hold_id)
    used = context + generation
    raise InvalidInput(
        f"cannot settle {used:,} tokens on a hold of {hold.amount:,}",
        held=hold.amount,
        settled=used,
    )


def release(
    session: Session,
    *,
    account_id: int,
    hold_id: int,
    now: dt.datetime,
    owner: HoldOwner = HoldOwner.API,
) -> Hold:
    """Give all of a hold's tokens back."""
    closed = _close_hold(
        session,
        account_id=account_id,
        hold_id=hold_id,
        status=HoldStatus.RELEASED,
        kind=EntryKind.RELEASE,
        now=now,
        owner=owner,
    )
    if closed is not None:
        return closed
    hold = _get_hold(session, account_id, hold_id)
    _check_owner(hold, owner)
    if hold.status == HoldStatus.RELEASED:
        return hold
    raise Conflict(f"this hold was already {hold.status}", hold_id=hold_id)


def extend_holds(
    session: Session,
    *,
    hold_ids: Sequence[int],
    owner: HoldOwner,
    until: dt.datetime,
) -> set[int]:
    """Keep pending holds of ``owner`` alive until ``until``; returns the ids still pending.

    A running chat turn calls this (through ``chat.keeper``) so that only a dead
    turn's hold ever expires. No balance changes, so no lock and no entry.
    """
    if not hold_ids:
        return set()
    sql = statements.core(session)
    kept = set(
        sql.execute(
            statements.EXTEND_HOLDS,
            {"holds": list(hold_ids), "hold_owner": owner, "until": until},
        ).scalars()
    )
    statements.forget(session, Hold, kept)
    return kept


def charge_lost_hold(
    session: Session,
    *,
    account_id: int,
    hold_id: int,
    context: int,
    generation: int,
    now: dt.datetime,
) -> LedgerEntry:
    """Charge what a turn used after its hold ended without it (expired while it ran).

    Takes at most what is available, soonest-expiring grants first: the balance
    never goes below zero. Recorded as a settle entry of that hold, with the
    figures actually charged; once per hold (a second call returns that entry).
    """
    context = _amount(context, name="context", allow_zero=True)
    generation = _amount(generation, name="generation", allow_zero=True)
    balance = lock_balance(session, account_id=account_id)
    hold = _get_hold(session, account_id, hold_id)
    if hold.status in (HoldStatus.PENDING, HoldStatus.SETTLED):
        raise Conflict(f"this hold is {hold.status}; settle it instead", hold_id=hold_id)
    earlier = session.scalar(
        select(LedgerEntry).where(
            LedgerEntry.hold_id == hold_id, LedgerEntry.kind == EntryKind.SETTLE
        )
    )
    if earlier is not None:
        return earlier
    charged = min(context + generation, balance.available)
    context = min(context, charged)
    generation = charged - context
    if charged:
        grants = _live_grants(session, account_id)
        by_id = {g.id: g for g in grants}
        for grant_id, taken in rules.allocate(_buckets(grants), charged):
            by_id[grant_id].remaining -= taken
    entry = _record(  # also when nothing could be charged: the turn's figures are on record
        session,
        balance,
        EntryKind.SETTLE,
        now,
        available_delta=-charged,
        consumed=charged,
        context_tokens=context,
        generation_tokens=generation,
        hold_id=hold_id,
        memo=f"used after the hold {hold.status}",
    )
    _after_change(session, balance)
    return entry


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
        closed = _close_hold(
            session,
            account_id=account_id,
            hold_id=hold_id,
            status=HoldStatus.EXPIRED,
            kind=EntryKind.HOLD_EXPIRY,
            now=now,
        )
        if closed is not None:  # None: settled, released or extended meanwhile
            expired += 1
    return expired


def expire_grants(
    session: Session,
    *,
    account_id: int,
    due_by: dt.datetime,
    now: dt.datetime,
    before_period: str | None = None,
) -> int:
    """Expire the grants due by ``due_by``, and the monthly ones whose last month (their
    own, or their ``last_period``) is before ``before_period``.

    A grant's expiry instant is fixed in the time zone the account had when it
    was granted; after a change of zone, its month can end before that instant.
    Returns how many tokens expired.
    """
    balance = lock_balance(session, account_id=account_id)
    total = 0
    for live in _live_grants(session, account_id, include_empty=True):
        if not _due(live, due_by, before_period):
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
        _after_change(session, balance)
    return total


# Tokens bought or given for a month, which end with it (or with their ``last_period``,
# when they roll over); an operator's adjustment ends when the operator said.
MONTHLY_SOURCES = frozenset({GrantSource.PURCHASE, GrantSource.RENEWAL, GrantSource.FREE})


def _due(grant: Grant, due_by: dt.datetime, before_period: str | None) -> bool:
    if grant.expires_at is None:
        return False
    if (
        before_period is not None
        and grant.source in MONTHLY_SOURCES
        and grant.period is not None
        and (grant.last_period or grant.period) < before_period
    ):
        return True
    return grant.expires_at <= due_by


def start_period(session: Session, *, account_id: int, period: str) -> Balance:
    """Begin a new month: its limit starts from zero and both alarms are re-armed."""
    balance = lock_balance(session, account_id=account_id)
    _enter_period(balance, period)
    return balance


def entries_written(session: Session) -> list[int]:
    """The ids of the ledger entries this session wrote so far (logged with the request)."""
    return list(session.info.get(statements.WRITTEN, ()))


def take_notices(session: Session) -> list[BalanceNotice]:
    """The notices this transaction's changes raised so far, handed over once."""
    taken: list[BalanceNotice] = session.info.pop(_NOTICES, [])
    return taken


def take_levels(session: Session) -> dict[int, Level]:
    """Each account this transaction's changes moved, with its balance after the last one;
    handed over once (auto top-up compares it with the account's threshold)."""
    taken: dict[int, Level] = session.info.pop(_LEVELS, {})
    return taken


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


def _check_owner(hold: Hold, owner: HoldOwner) -> None:
    if hold.owner != owner:
        raise HoldNotYours(
            "this hold belongs to a chat turn, which settles it itself"
            if hold.owner == HoldOwner.CHAT
            else "this hold was made through the API; settle or release it there",
            hold_id=hold.id,
        )


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
    values = _entry(balance, kind, now, available_delta, reserved_delta, fields)
    entry = LedgerEntry(**values)
    session.add(entry)
    session.flush()  # the entry's id; the balance row is written once, at commit
    session.info.setdefault(statements.WRITTEN, []).append(entry.id)
    _moved(balance, values)
    balance.last_entry_id = entry.id
    return entry


def _entry(
    balance: Balance,
    kind: EntryKind,
    now: dt.datetime,
    available_delta: int,
    reserved_delta: int,
    fields: Mapping[str, object],
) -> dict[str, Any]:
    """The columns of the next entry, with the balance after it."""
    available = balance.available + available_delta
    reserved = balance.reserved + reserved_delta
    if available < 0 or reserved < 0:  # the lock makes this unreachable
        raise AssertionError(f"ledger invariant broken for account {balance.account_id}")
    return {
        "account_id": balance.account_id,
        "kind": kind,
        "available_delta": available_delta,
        "reserved_delta": reserved_delta,
        "available_after": available,
        "reserved_after": reserved,
        "created_at": now,
        **fields,
    }


def _moved(balance: Balance, entry: Mapping[str, Any]) -> None:
    balance.available, balance.reserved = entry["available_after"], entry["reserved_after"]


def _after_change(session: Session, balance: Balance) -> None:
    levels: dict[int, Level] = session.info.setdefault(_LEVELS, {})
    levels[balance.account_id] = Level(balance.balance, balance.period)
    notices, alarms = thresholds.evaluate(
        balance=balance.balance,
        limit=balance.period_granted,
        alarms=thresholds.Alarms(balance.low_armed, balance.depleted_armed),
    )
    balance.low_armed, balance.depleted_armed = alarms.low_armed, alarms.depleted_armed
    for notice in notices:
        _raise(session, balance, notice)


def _raise(session: Session, balance: Balance, notice: Notice) -> None:
    """Hand ``notice`` to whoever commits this transaction, with the figures now."""
    balance.notice_seq += 1
    raised: list[BalanceNotice] = session.info.setdefault(_NOTICES, [])
    raised.append(
        BalanceNotice(
            account_id=balance.account_id,
            notice=notice,
            seq=balance.notice_seq,
            balance=balance.balance,
            available=balance.available,
            period_granted=balance.period_granted,
            period=balance.period,
        )
    )


def _close_hold(
    session: Session,
    *,
    account_id: int,
    hold_id: int,
    status: HoldStatus,
    kind: EntryKind,
    now: dt.datetime,
    owner: HoldOwner | None = None,
    context: int = 0,
    generation: int = 0,
) -> Hold | None:
    """Close a pending hold, spending ``context + generation`` of it and giving the rest back.

    ``owner``: the caller finishing its own hold; None: the expiry of a hold whose
    time ran out. Returns None, having written nothing, if the hold is not this
    account's, not pending, not the owner's, not due, or smaller than what was
    spent; the caller says which.
    """
    sql = statements.core(session)
    balance = statements.lock(sql, account_id)
    used = context + generation
    changes: dict[str, Any] = {"status": status, "finished_at": now}
    if status == HoldStatus.SETTLED:
        changes |= {"context_tokens": context, "generation_tokens": generation}
    params = {"hold": hold_id, "account": account_id, "used": used, **changes}
    if owner is None:
        params["due"] = now
    else:
        params["hold_owner"] = owner
    row, spent, expired = statements.finish_hold(sql, params, expiry=owner is None)
    if row is None:
        return None
    hold = statements.as_hold(session, row)
    back = rules.give_back(spent, hold.amount - used)
    # Only live grants take tokens back (``save``); a grant expires under this lock only.
    returned_live = sum(tokens for grant_id, tokens in back if grant_id not in expired)
    entry = _entry(
        balance,
        kind,
        now,
        returned_live,
        -hold.amount,
        {
            "consumed": used,
            "context_tokens": context,
            "generation_tokens": generation,
            # the month ended while the chat ran: the unused tokens of its grants end with it
            "expired": sum(tokens for _, tokens in back) - returned_live,
            "hold_id": hold.id,
        },
    )
    _moved(balance, entry)
    _after_change(session, balance)
    statements.save(session, sql, balance, entry, grants=back)
    return hold
