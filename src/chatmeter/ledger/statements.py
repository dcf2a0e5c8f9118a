"""The ledger's hot path in SQL: prebuilt Core statements and the helpers that run them.

``reserve`` and ``settle`` run on every chat turn while the account's balance
row is locked, so ``service`` sends these statements instead of flushing the
ORM's unit of work. Built once, at import: building a statement and its cache
key costs several times what running it does. Parameters named after columns
fill the SET of an UPDATE and the VALUES of an INSERT.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Table,
    Update,
    bindparam,
    case,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from chatmeter.errors import NotFound
from chatmeter.ledger import rules
from chatmeter.ledger.models import Balance, Grant, Hold, HoldAllocation, HoldStatus, LedgerEntry

# Declarative classes type their table loosely (a FromClause); these are Tables.
_BALANCES = cast(Table, Balance.__table__)
_GRANTS = cast(Table, Grant.__table__)
_HOLDS = cast(Table, Hold.__table__)
_ALLOCATIONS = cast(Table, HoldAllocation.__table__)
_ENTRIES = cast(Table, LedgerEntry.__table__)

_LOCK = select(*_BALANCES.c).where(_BALANCES.c.account_id == bindparam("account")).with_for_update()
_SAVE_BALANCE = update(_BALANCES).where(_BALANCES.c.account_id == bindparam("account"))
_INSERT_HOLD = {
    name: dialect.insert(_HOLDS)
    .on_conflict_do_nothing(index_elements=["account_id", "key"])
    .returning(_HOLDS.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_FINISH_HOLD = (
    update(_HOLDS)
    .where(
        _HOLDS.c.id == bindparam("hold"),
        _HOLDS.c.account_id == bindparam("account"),
        _HOLDS.c.status == HoldStatus.PENDING,
        _HOLDS.c.amount >= bindparam("used"),
    )
    .returning(*_HOLDS.c)
)
# Settling and releasing are for the hold's owner; expiry is for a hold whose time
# ran out, checked again under the lock: a live turn may have extended it since.
FINISH_OWN_HOLD = _FINISH_HOLD.where(_HOLDS.c.owner == bindparam("hold_owner"))
EXPIRE_HOLD = _FINISH_HOLD.where(_HOLDS.c.expires_at <= bindparam("due"))
EXTEND_HOLDS = (
    update(_HOLDS)
    .where(
        _HOLDS.c.id.in_(bindparam("holds", expanding=True)),
        _HOLDS.c.owner == bindparam("hold_owner"),
        _HOLDS.c.status == HoldStatus.PENDING,
    )
    .values(expires_at=bindparam("until"))
    .returning(_HOLDS.c.id)
)
_LIVE_GRANTS = (
    select(_GRANTS.c.id, _GRANTS.c.remaining, _GRANTS.c.expires_at)
    .where(
        _GRANTS.c.account_id == bindparam("account"),
        _GRANTS.c.expired_at.is_(None),
        _GRANTS.c.remaining > 0,
    )
    .order_by(_GRANTS.c.id)
)
_ALLOCATIONS_OF_HOLD = (
    select(_ALLOCATIONS.c.grant_id, _ALLOCATIONS.c.amount, _GRANTS.c.expires_at)
    .join(_GRANTS, _GRANTS.c.id == _ALLOCATIONS.c.grant_id)
    .where(_ALLOCATIONS.c.hold_id == bindparam("hold"))
)
INSERT_ALLOCATIONS = insert(_ALLOCATIONS)
_INSERT_ENTRY = insert(_ENTRIES).returning(_ENTRIES.c.id)
# Every column but the id, so that one statement serves every kind of entry.
_ENTRY_DEFAULTS: dict[str, Any] = {
    c.name: c.default.arg if isinstance(c.default, ScalarElementColumnDefault) else None
    for c in _ENTRIES.c
    if not c.primary_key
}
# PostgreSQL inserts the entry and saves the balance in one statement (a
# data-modifying WITH): one round trip less while the row is locked.
_NEW_ENTRY = (
    insert(_ENTRIES)
    .values(
        {name: bindparam(f"entry_{name}", type_=_ENTRIES.c[name].type) for name in _ENTRY_DEFAULTS}
    )
    .returning(_ENTRIES.c.id)
    .cte("new_entry")
)
_INSERT_ENTRY_AND_SAVE = (
    _SAVE_BALANCE.values(last_entry_id=select(_NEW_ENTRY.c.id).scalar_subquery())
    .add_cte(_NEW_ENTRY)
    .returning(_BALANCES.c.last_entry_id)
)
# The ids of the entries a session wrote, for the logs (``service.entries_written``).
WRITTEN = "chatmeter.ledger.written"


@functools.cache
def _change_grants_statement(count: int) -> Update:
    """Add ``change_N`` to the remaining tokens of live grant ``grant_N``, for N < count."""
    ids = [bindparam(f"grant_{n}", type_=BigInteger()) for n in range(count)]
    change = case(
        *(
            (_GRANTS.c.id == ids[n], bindparam(f"change_{n}", type_=BigInteger()))
            for n in range(count)
        )
    )
    return (
        update(_GRANTS)
        .where(_GRANTS.c.id.in_(ids), _GRANTS.c.expired_at.is_(None))
        .values(remaining=_GRANTS.c.remaining + change)
        .returning(_GRANTS.c.id)
    )


def core(session: Session) -> Connection:
    """The session's connection for Core statements, with the session's changes flushed.

    Statements run on the connection skip the session's autoflush; flushing
    first lets them see what the caller changed through the ORM.
    """
    session.flush()
    return session.connection()


def lock(sql: Connection, account_id: int) -> Balance:
    """``lock_balance`` for the hot path: the locked row as a copy outside the session.

    The verbs change the copy and write it back with one UPDATE (``save``).
    """
    row = sql.execute(_LOCK, {"account": account_id}).one_or_none()
    if row is None:
        raise NotFound("no such account", account_id=account_id)
    return Balance(**row._mapping)


def save(session: Session, sql: Connection, balance: Balance, entry: Mapping[str, Any]) -> None:
    """Insert ``entry`` and write back the copy made by ``lock``, now the balance after it."""
    saved = {
        "account": balance.account_id,
        "available": balance.available,
        "reserved": balance.reserved,
        "low_armed": balance.low_armed,
        "depleted_armed": balance.depleted_armed,
        "notice_seq": balance.notice_seq,
    }
    entry = {**_ENTRY_DEFAULTS, **entry}
    if sql.dialect.name == "postgresql":
        entry_id = sql.execute(
            _INSERT_ENTRY_AND_SAVE, saved | {f"entry_{k}": v for k, v in entry.items()}
        ).scalar_one()
    else:
        entry_id = saved["last_entry_id"] = sql.execute(_INSERT_ENTRY, entry).scalar_one()
        sql.execute(_SAVE_BALANCE, saved)
    session.info.setdefault(WRITTEN, []).append(entry_id)
    forget(session, Balance, [balance.account_id])


def insert_hold(sql: Connection, hold: Mapping[str, Any]) -> int | None:
    """Insert a hold and return its id, or None (and write nothing) if its key was used."""
    return sql.execute(_INSERT_HOLD[sql.dialect.name], hold).scalar_one_or_none()


def live_buckets(sql: Connection, account_id: int) -> list[rules.Bucket]:
    rows = sql.execute(_LIVE_GRANTS, {"account": account_id})
    return [rules.Bucket(grant_id, remaining, expires) for grant_id, remaining, expires in rows]


def change_grants(
    session: Session, sql: Connection, changes: Sequence[tuple[int, int]]
) -> set[int]:
    """Add each change to its grant's remaining tokens, in one statement.

    Expired grants are left alone. Returns the ids of the grants changed.
    """
    if not changes:
        return set()
    params = {}
    for n, (grant_id, change) in enumerate(changes):
        params[f"grant_{n}"], params[f"change_{n}"] = grant_id, change
    ids = set(sql.execute(_change_grants_statement(len(changes)), params).scalars())
    forget(session, Grant, ids)
    return ids


def allocations(sql: Connection, hold_id: int) -> list[tuple[int, int]]:
    """Which grants a hold took its tokens from, ``(grant_id, tokens)`` in spending order."""
    rows = sql.execute(_ALLOCATIONS_OF_HOLD, {"hold": hold_id}).all()
    taken = {grant_id: amount for grant_id, amount, _ in rows}
    order = rules.spending_order(
        rules.Bucket(grant_id, 0, expires) for grant_id, _, expires in rows
    )
    return [(bucket.grant_id, taken[bucket.grant_id]) for bucket in order]


def as_hold(session: Session, row: Mapping[Any, Any]) -> Hold:
    """The session's ``Hold`` for a row written by a Core statement, without reading it again."""
    hold = session.identity_map.get(session.identity_key(Hold, row["id"]))
    if not isinstance(hold, Hold):
        hold = Hold(**row)
        make_transient_to_detached(hold)  # as if loaded: adding it writes nothing
        session.add(hold)
    else:
        for name, value in row.items():
            set_committed_value(hold, name, value)
    return hold


def forget(session: Session, model: type[Any], ids: Iterable[int]) -> None:
    """Expire the session's instances of rows a Core statement changed: read again on use."""
    for ident in ids:
        stale = session.identity_map.get(session.identity_key(model, ident))
        if stale is not None:
            session.expire(stale)
