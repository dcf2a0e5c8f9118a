"""Typed dependencies for the routes: the context, the caller's account, the clock."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from chatmeter.accounts import service as accounts
from chatmeter.context import Context
from chatmeter.db import MAX_ID
from chatmeter.errors import Unauthorized

# A row's id in the path, or a cursor or filter in the query: a number the database
# can hold, so that an impossible one is refused here rather than crash the query.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[Context, Depends(get_context)]


def get_account_id(request: Request, ctx: ContextDep) -> int:
    """The account whose API key is in ``Authorization: Bearer ...``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    with ctx.db.read() as session:
        return accounts.authenticate(session, token=token.strip())


AccountDep = Annotated[int, Depends(get_account_id)]
