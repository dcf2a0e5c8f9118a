"""Balance, holds and the ledger: the token API that chat turns are built on."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sqlalchemy import select

from chatmeter.billing.summary import balance_summary
from chatmeter.errors import NotFound
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Hold, LedgerEntry
from chatmeter.notifications import balance_notices
from chatmeter.web.deps import AccountDep, ContextDep, IdPath, IdQuery
from chatmeter.web.schemas import BalanceOut, EntryOut, HoldIn, HoldOut, LedgerPage, SettleIn

router = APIRouter(tags=["tokens"])


@router.get("/balance", response_model=BalanceOut)
def get_balance(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """The account's tokens: balance, reserved, this month's limit, renewal, active."""
    with ctx.db.read() as session:
        return balance_summary(session, account_id=account_id, now=ctx.clock.now()).as_dict()


@router.post(
    "/holds",
    response_model=HoldOut,
    status_code=201,
    responses={402: {"description": "insufficient_tokens"}},
)
def create_hold(
    body: HoldIn,
    ctx: ContextDep,
    account_id: AccountDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Reserve tokens for a chat turn; the balance is checked here."""
    key = body.key or idempotency_key or f"hold:{uuid.uuid4()}"
    with ctx.db.uow() as uow:
        hold = ledger.reserve(
            uow.session,
            account_id=account_id,
            tokens=body.tokens,
            key=key,
            ttl_seconds=body.ttl_seconds or ctx.settings.hold_ttl_seconds,
            now=ctx.clock.now(),
        )
        uow.commit()
    return hold_dict(hold)


@router.get("/holds/{hold_id}", response_model=HoldOut)
def get_hold(hold_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.read() as session:
        hold = session.get(Hold, hold_id)
        if hold is None or hold.account_id != account_id:
            raise NotFound("no such hold", hold_id=hold_id)
        return hold_dict(hold)


@router.post(
    "/holds/{hold_id}/settle",
    response_model=HoldOut,
    responses={409: {"description": "already finished, or a chat turn's own (hold_not_yours)"}},
)
def settle_hold(
    hold_id: IdPath, body: SettleIn, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """Spend what the turn used (context + generation ≤ held) and free the rest."""
    with ctx.db.uow() as uow:
        hold = ledger.settle(
            uow.session,
            account_id=account_id,
            hold_id=hold_id,
            context=body.context,
            generation=body.generation,
            now=ctx.clock.now(),
        )
        balance_notices.send_raised(uow.session, now=ctx.clock.now(), settings=ctx.settings)
        uow.commit()
    return hold_dict(hold)


@router.post(
    "/holds/{hold_id}/release",
    response_model=HoldOut,
    responses={409: {"description": "already finished, or a chat turn's own (hold_not_yours)"}},
)
def release_hold(hold_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.uow() as uow:
        hold = ledger.release(
            uow.session, account_id=account_id, hold_id=hold_id, now=ctx.clock.now()
        )
        balance_notices.send_raised(uow.session, now=ctx.clock.now(), settings=ctx.settings)
        uow.commit()
    return hold_dict(hold)


@router.get("/ledger", response_model=LedgerPage)
def get_ledger(
    ctx: ContextDep,
    account_id: AccountDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: IdQuery = None,
) -> dict[str, Any]:
    """Ledger entries, newest first; page with ``before``."""
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    with ctx.db.read() as session:
        entries = list(session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit + 1)))
    more = len(entries) > limit
    entries = entries[:limit]
    return {
        "entries": [entry_dict(e) for e in entries],
        "next_before": entries[-1].id if more and entries else None,
    }


def hold_dict(hold: Hold) -> dict[str, Any]:
    return {
        "id": hold.id,
        "key": hold.key,
        "tokens": hold.amount,
        "owner": hold.owner,
        "status": hold.status,
        "context": hold.context_tokens,
        "generation": hold.generation_tokens,
        "created_at": hold.created_at,
        "expires_at": hold.expires_at,
    }


def entry_dict(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "available_delta": entry.available_delta,
        "reserved_delta": entry.reserved_delta,
        "balance_after": entry.balance_after,
        "available_after": entry.available_after,
        "reserved_after": entry.reserved_after,
        "consumed": entry.consumed,
        "context": entry.context_tokens,
        "generation": entry.generation_tokens,
        "expired": entry.expired,
        "grant_id": entry.grant_id,
        "hold_id": entry.hold_id,
        "memo": entry.memo,
        "created_at": entry.created_at,
    }


EntryOut.model_rebuild()
