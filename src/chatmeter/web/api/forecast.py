"""The runway forecast of the account and the launch estimate of an assistant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from chatmeter.assistants import estimate as launch
from chatmeter.assistants import service as assistants
from chatmeter.billing.runway import account_runway, runway_dict
from chatmeter.web.deps import AccountDep, ContextDep, IdPath

router = APIRouter(tags=["forecast"])

ConversationsPerDay = Annotated[
    int,
    Query(ge=1, le=launch.MAX_CONVERSATIONS_PER_DAY, description="Expected conversations a day"),
]


@router.get("/forecast")
def get_forecast(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """When the available balance runs out at the recent pace, whether this month's
    tokens last until the renewal and the packages that would make them last, with the
    daily figures it read."""
    with ctx.db.read() as session:
        result = account_runway(
            session, settings=ctx.settings, account_id=account_id, now=ctx.clock.now()
        )
    return runway_dict(result)


@router.get("/assistants/{assistant_id}/estimate")
def get_estimate(
    assistant_id: IdPath,
    conversations_per_day: ConversationsPerDay,
    ctx: ContextDep,
    account_id: AccountDep,
) -> dict[str, Any]:
    """Tokens a month and packages for an assistant at the expected conversations a day,
    from its own conversations, or before any from its settings (the assumption said)."""
    with ctx.db.read() as session:
        assistant = assistants.get_assistant(
            session, account_id=account_id, assistant_id=assistant_id
        )
        seen = launch.measured(session, assistant=assistant)
    return launch.estimate(
        assistant=assistant,
        seen=seen,
        conversations_per_day=conversations_per_day,
        package_tokens=ctx.settings.package_tokens,
        history_tokens=ctx.settings.chat_history_tokens,
        rate=ctx.rate_card.rate_for(assistant.model or assistant.provider),
    ).as_dict()
