"""Typed dependencies for the routes: the context, the caller's account and key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from chatmeter.accounts import keys
from chatmeter.accounts.models import Scope
from chatmeter.context import Context
from chatmeter.db import MAX_ID, MAX_INT_ID
from chatmeter.errors import Unauthorized

# A row's id in the path, or a cursor or filter in the query: a number the database
# can hold, so that an impossible one is refused here rather than crash the query.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
# An API key's id: 32 bits (``db.MAX_INT_ID``).
KeyIdPath = Annotated[int, Path(ge=1, le=MAX_INT_ID)]


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[Context, Depends(get_context)]


def get_caller(request: Request, ctx: ContextDep) -> keys.Caller:
    """The key in ``Authorization: Bearer ...``, if it works and its scope allows the request.

    Every route that takes an API key goes through here, so a read-only key can never
    make a writing request, whatever route is added later.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    with ctx.db.read() as session:
        key = keys.authenticate(session, token=token.strip())
    scope = Scope(key.scope)
    keys.check_method(scope, request.method)
    keys.note_use(ctx.db, key=key, now=ctx.clock.now())
    return keys.Caller(account_id=key.account_id, key_id=key.id, scope=scope)


CallerDep = Annotated[keys.Caller, Depends(get_caller)]


def get_account_id(caller: CallerDep) -> int:
    """The account whose API key is in ``Authorization: Bearer ...``."""
    return caller.account_id


AccountDep = Annotated[int, Depends(get_account_id)]
