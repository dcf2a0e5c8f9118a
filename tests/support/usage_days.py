"""Usage written as the stored answers the Usage page counts, at chosen instants and with
exact token figures: a conversation, its question and its answer."""

from __future__ import annotations

import datetime as dt
import itertools

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.chat.models import Conversation, Message
from chatmeter.clock import FixedClock
from chatmeter.context import Context

_ids = itertools.count()


def new_assistant(ctx: Context, account_id: int, name: str) -> int:
    with ctx.db.uow() as uow:
        bot = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(name=name),
            now=ctx.clock.now(),
        )
        uow.commit()
        return bot.id


def answered(
    ctx: Context, account_id: int, assistant_id: int, at: dt.datetime, tokens: int
) -> None:
    """One stored turn at ``at``: the question and an answer of ``tokens`` tokens."""
    with ctx.db.uow() as uow:
        conversation = Conversation(
            public_id=f"c-{next(_ids)}",
            assistant_id=assistant_id,
            account_id=account_id,
            messages=2,
            context_tokens=tokens - tokens // 4,
            generation_tokens=tokens // 4,
            created_at=at,
            updated_at=at,
        )
        uow.session.add(conversation)
        uow.session.flush()
        for role, context, generation in (
            ("user", 0, 0),
            ("assistant", tokens - tokens // 4, tokens // 4),
        ):
            uow.session.add(
                Message(
                    conversation_id=conversation.id,
                    role=role,
                    content="…",
                    context_tokens=context,
                    generation_tokens=generation,
                    created_at=at,
                )
            )
        uow.commit()


def history(
    ctx: Context, clock: FixedClock, account_id: int, assistant_id: int, per_day: list[int]
) -> None:
    """``per_day`` tokens on the days before today (oldest first), at 10:00 UTC."""
    today = clock.now().replace(hour=10, minute=0)
    for back, tokens in enumerate(reversed(per_day), start=1):
        if tokens:
            answered(ctx, account_id, assistant_id, today - dt.timedelta(days=back), tokens)


def today(ctx: Context, clock: FixedClock, account_id: int, assistant_id: int, tokens: int) -> None:
    answered(ctx, account_id, assistant_id, clock.now() - dt.timedelta(minutes=30), tokens)
