"""The account's API keys: list, create (the key is shown once), revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chatmeter.accounts import keys
from chatmeter.web.deps import CallerDep, ContextDep, KeyIdPath
from chatmeter.web.schemas import ApiKeyIn, ApiKeyOut, NewApiKeyOut

router = APIRouter(tags=["keys"])


@router.get("/keys", response_model=list[ApiKeyOut])
def list_keys(ctx: ContextDep, caller: CallerDep) -> list[dict[str, Any]]:
    """The account's keys, those in use first; never their secrets."""
    with ctx.db.read() as session:
        return [keys.key_dict(k) for k in keys.list_keys(session, account_id=caller.account_id)]


@router.post("/keys", response_model=NewApiKeyOut, status_code=201)
def create_key(body: ApiKeyIn, ctx: ContextDep, caller: CallerDep) -> dict[str, Any]:
    """Make a key; ``key`` is in this answer only. A key cannot make a wider-scoped key."""
    keys.check_grantable(caller.scope, keys.parse_scope(body.scope))
    with ctx.db.uow() as uow:
        key, secret = keys.issue(
            uow.session,
            account_id=caller.account_id,
            name=body.name,
            scope=body.scope,
            now=ctx.clock.now(),
        )
        uow.commit()
        return keys.key_dict(key) | {"key": secret}


@router.post("/keys/{key_id}/revoke", response_model=ApiKeyOut)
def revoke_key(key_id: KeyIdPath, ctx: ContextDep, caller: CallerDep) -> dict[str, Any]:
    """Stop a key working at once (this one too, if it is the one calling)."""
    with ctx.db.uow() as uow:
        key = keys.revoke(
            uow.session, account_id=caller.account_id, key_id=key_id, now=ctx.clock.now()
        )
        uow.commit()
        return keys.key_dict(key)
