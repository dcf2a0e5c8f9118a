"""The ledger's hot path in SQL: prebuilt Core statements and the helpers that run them.

``reserve`` and ``settle`` run on every chat turn while the account's balance
row is locked, so ``service`` sends these statements instead of flushing the
ORM's unit of work. Built once, at import: building a statement and its cache
key costs several times what running it does. Parameters named after columns
fill the SET of an UPDATE and the VALUES of an INSERT.

On PostgreSQL a verb's writes after the lock travel together: data-modifying
``WITH`` statements put reserve's hold and the read of the live grants in one
statement and its grants, allocations, entry and balance in another; settle's
closing of the hold and the read of its allocations in one, and its grants,
entry and balance in another. Three round trips a verb plus BEGIN and COMMIT,
instead of five or six. (SQLite has no data-modifying ``WITH``; it runs them one by
one, in process.)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    Table,
    Update,
    bindparam,
    case,
    func,
    insert,
    select,
    true,
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
    select(
        _ALLOCATIONS.c.grant_id, _ALLOCATIONS.c.amount, _GRANTS.c.expires_at, _GRANTS.c.expired_at
    )
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

# --- PostgreSQL: a verb's statements after the lock, joined -------------------------------

_HOLD_COLUMNS = [c.name for c in _HOLDS.c if not c.primary_key]
# reserve: insert the hold (nothing if its key was used) and read the live grants.
_NEW_HOLD = (
    postgresql.insert(_HOLDS)
    .values({name: bindparam(f"hold_{name}", type_=_HOLDS.c[name].type) for name in _HOLD_COLUMNS})
    .on_conflict_do_nothing(index_elements=["account_id", "key"])
    .returning(_HOLDS.c.id)
    .cte("new_hold")
)
_LIVE = _LIVE_GRANTS.subquery("live")
_INSERT_HOLD_READ_GRANTS = (
    select(_NEW_HOLD.c.id.label("hold_id"), _LIVE.c.id, _LIVE.c.remaining, _LIVE.c.expires_at)
    .select_from(_NEW_HOLD.outerjoin(_LIVE, true()))
    .order_by(_LIVE.c.id)
)


@functools.cache
def _finish_hold_reading_allocations(expiry: bool, settled: bool) -> Select[Any]:
    """Close the hold (as ``FINISH_OWN_HOLD`` or ``EXPIRE_HOLD``) and return it with one row
    per allocation: the grant, the tokens, and the grant's expiry and whether it expired."""
    finish = EXPIRE_HOLD if expiry else FINISH_OWN_HOLD
    changes = ["status", "finished_at"] + (["context_tokens", "generation_tokens"] * settled)
    closed = finish.values(
        {name: bindparam(f"closing_{name}", type_=_HOLDS.c[name].type) for name in changes}
    ).cte("closed")
    return select(
        *closed.c,
        _ALLOCATIONS.c.grant_id.label("allocated_grant"),
        _ALLOCATIONS.c.amount.label("allocated"),
        _GRANTS.c.expires_at.label("grant_expires_at"),
        _GRANTS.c.expired_at.label("grant_expired_at"),
    ).select_from(
        closed.outerjoin(_ALLOCATIONS, _ALLOCATIONS.c.hold_id == closed.c.id).outerjoin(
            _GRANTS, _GRANTS.c.id == _ALLOCATIONS.c.grant_id
        )
    )


# A new hold's allocations from two arrays: one statement (and one cached compilation)
# for any number of grants; a multi-row VALUES would be compiled anew on every call.
_ALLOCATED = (
    func.unnest(
        bindparam("allocated_grants", type_=postgresql.ARRAY(BigInteger())),
        bindparam("allocated_tokens", type_=postgresql.ARRAY(BigInteger())),
    )
    .table_valued("grant_id", "tokens")
    .render_derived(name="allocated")
)
_NEW_ALLOCATIONS = (
    insert(_ALLOCATIONS)
    .from_select(
        ["hold_id", "grant_id", "amount"],
        select(
            bindparam("allocations_hold", type_=BigInteger()),
            _ALLOCATED.c.grant_id,
            _ALLOCATED.c.tokens,
        ),
    )
    .cte("new_allocations")
)


@functools.cache
def _write_all(grants: int, allocations: bool) -> Update:
    """The grants' changes (``_change_grants_statement``), a new hold's allocations, the
    entry and the balance: one statement."""
    statement = _SAVE_BALANCE.values(
        last_entry_id=select(_NEW_ENTRY.c.id).scalar_subquery()
    ).add_cte(_NEW_ENTRY)
    if grants:
        statement = statement.add_cte(_change_grants_statement(grants).cte("changed_grants"))
    if allocations:
        statement = statement.add_cte(_NEW_ALLOCATIONS)
    return statement.returning(_BALANCES.c.last_entry_id)


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


def save(
    session: Session,
    sql: Connection,
    balance: Balance,
    entry: Mapping[str, Any],
    *,
    grants: Sequence[tuple[int, int]] = (),
    allocations: tuple[int, Sequence[tuple[int, int]]] | None = None,
) -> None:
    """Insert ``entry`` and write back the copy made by ``lock``, now the balance after it;
    first add ``grants``' changes to the live grants' remaining tokens (as
    ``change_grants``) and insert ``allocations``, ``(hold_id, [(grant_id, tokens)])``."""
    saved = {
        "account": balance.account_id,
        "available": balance.available,
        "reserved": balance.reserved,
        "low_armed": balance.low_armed,
        "depleted_armed": balance.depleted_armed,
        "notice_seq": balance.notice_seq,
    }
    entry = {**_ENTRY_DEFAULTS, **entry}
    hold_id, allocated = allocations if allocations else (0, [])
    if sql.dialect.name == "postgresql":
        params = saved | {f"entry_{k}": v for k, v in entry.items()}
        for n, (grant_id, change) in enumerate(grants):
            params[f"grant_{n}"], params[f"change_{n}"] = grant_id, change
        params["allocations_hold"] = hold_id
        params["allocated_grants"] = [grant_id for grant_id, _ in allocated]
        params["allocated_tokens"] = [tokens for _, tokens in allocated]
        entry_id = sql.execute(_write_all(len(grants), bool(allocated)), params).scalar_one()
        forget(session, Grant, [grant_id for grant_id, _ in grants])
    else:
        change_grants(session, sql, grants)
        if allocated:
            sql.execute(
                INSERT_ALLOCATIONS,
                [{"hold_id": hold_id, "grant_id": g, "amount": t} for g, t in allocated],
            )
        entry_id = saved["last_entry_id"] = sql.execute(_INSERT_ENTRY, entry).scalar_one()
        sql.execute(_SAVE_BALANCE, saved)
    session.info.setdefault(WRITTEN, []).append(entry_id)
    forget(session, Balance, [balance.account_id])


def insert_hold_reading_grants(
    sql: Connection, hold: Mapping[str, Any]
) -> tuple[int | None, list[rules.Bucket]]:
    """``insert_hold``, and the account's live grants (``live_buckets``) read after it.

    The grants are read only when the hold was inserted (an empty list otherwise).
    """
    if sql.dialect.name != "postgresql":
        hold_id = insert_hold(sql, hold)
        return hold_id, live_buckets(sql, hold["account_id"]) if hold_id is not None else []
    params = {f"hold_{name}": hold[name] for name in _HOLD_COLUMNS}
    rows = sql.execute(_INSERT_HOLD_READ_GRANTS, params | {"account": hold["account_id"]}).all()
    if not rows:
        return None, []
    buckets = [
        rules.Bucket(row.id, row.remaining, row.expires_at) for row in rows if row.id is not None
    ]
    return rows[0].hold_id, buckets


def finish_hold(
    sql: Connection, params: Mapping[str, Any], *, expiry: bool
) -> tuple[Mapping[str, Any] | None, list[tuple[int, int]], set[int]]:
    """Close a pending hold (``EXPIRE_HOLD`` if ``expiry``, else ``FINISH_OWN_HOLD``) and
    read its allocations: the closed hold's row (None: nothing matched, nothing written),
    its ``allocations`` in spending order, and which of those grants expired."""
    if sql.dialect.name != "postgresql":
        row = sql.execute(EXPIRE_HOLD if expiry else FINISH_OWN_HOLD, params).one_or_none()
        if row is None:
            return None, [], set()
        rows = sql.execute(_ALLOCATIONS_OF_HOLD, {"hold": row.id}).all()
        return dict(row._mapping), _spending(rows), {g for g, _, _, expired in rows if expired}
    settled = "context_tokens" in params
    statement = _finish_hold_reading_allocations(expiry, settled)
    changes = ["status", "finished_at"] + (["context_tokens", "generation_tokens"] * settled)
    rows = sql.execute(
        statement,
        {k: v for k, v in params.items() if k not in changes}
        | {f"closing_{name}": params[name] for name in changes},
    ).all()
    if not rows:
        return None, [], set()
    hold = {name: rows[0]._mapping[name] for name in ("id", *_HOLD_COLUMNS)}
    spent = [
        (row.allocated_grant, row.allocated, row.grant_expires_at, row.grant_expired_at)
        for row in rows
        if row.allocated_grant is not None  # a hold of no tokens has no allocations
    ]
    return hold, _spending(spent), {g for g, _, _, expired in spent if expired}


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


def _spending(rows: Iterable[Sequence[Any]]) -> list[tuple[int, int]]:
    """A hold's allocations ``(grant_id, tokens, expires_at, …)`` as ``(grant_id, tokens)``
    in spending order."""
    rows = list(rows)
    taken = {row[0]: row[1] for row in rows}
    order = rules.spending_order(rules.Bucket(row[0], 0, row[2]) for row in rows)
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
