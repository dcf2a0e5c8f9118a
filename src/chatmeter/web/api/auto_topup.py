"""Auto top-up: the account's setting, and what it did this month (``billing.topups``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictBool, StrictInt

from chatmeter.billing import topups
from chatmeter.billing.subscriptions import MAX_PACKAGES, MIN_PACKAGES
from chatmeter.web.deps import AccountDep, ContextDep
from chatmeter.web.schemas import Strict

router = APIRouter(tags=["billing"])


class AutoTopUpIn(Strict):
    """The fields to change; a field left out keeps its value."""

    enabled: StrictBool | None = None
    threshold: Annotated[StrictInt, Field(ge=0, le=topups.MAX_THRESHOLD)] | None = Field(
        default=None, description="Top up when the balance falls below this many tokens."
    )
    packages: Annotated[StrictInt, Field(ge=MIN_PACKAGES, le=MAX_PACKAGES)] | None = Field(
        default=None, description="Packages each top-up buys (this month only)."
    )
    monthly_cap: Annotated[StrictInt, Field(ge=topups.MIN_CAP, le=topups.MAX_CAP)] | None = Field(
        default=None, description="At most this many top-ups per calendar month."
    )


class AutoTopUpOut(BaseModel):
    enabled: bool
    threshold: int
    packages: int
    monthly_cap: int
    tokens_per_top_up: int
    period: str
    used_this_month: int = Field(description="Top-ups started this month, declined ones too.")
    waiting: bool = Field(description="A top-up waits for its payment; no other starts.")
    disabled_reason: str | None = Field(
        description="Why auto top-up turned itself off (a declined charge), else null."
    )
    disabled_at: dt.datetime | None


@router.get("/billing/auto-top-up", response_model=AutoTopUpOut)
def get_auto_top_up(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.read() as session:
        return topups.overview(
            session, settings=ctx.settings, account_id=account_id, now=ctx.clock.now()
        )


@router.put("/billing/auto-top-up", response_model=AutoTopUpOut)
def put_auto_top_up(body: AutoTopUpIn, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """Turn auto top-up on or off and set its threshold, packages and monthly cap."""
    with ctx.db.uow() as uow:
        topups.configure(
            uow.session,
            account_id=account_id,
            now=ctx.clock.now(),
            enabled=body.enabled,
            threshold=body.threshold,
            packages=body.packages,
            monthly_cap=body.monthly_cap,
        )
        uow.commit()
    return get_auto_top_up(ctx, account_id)
