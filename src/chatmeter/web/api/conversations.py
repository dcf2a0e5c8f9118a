"""The customer's view of conversations, with each message's token figures."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from chatmeter.chat import conversations
from chatmeter.web.deps import AccountDep, ContextDep, IdPath, IdQuery

router = APIRouter(tags=["conversations"])


@router.get("/conversations")
def list_conversations(
    ctx: ContextDep,
    account_id: AccountDep,
    assistant_id: IdQuery = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: IdQuery = None,
) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        return [
            conversations.conversation_dict(c)
            for c in conversations.list_conversations(
                session,
                account_id=account_id,
                assistant_id=assistant_id,
                limit=limit,
                before=before,
            )
        ]


@router.get("/conversations/{conversation_id}")
def get_conversation(
    conversation_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """A conversation and its messages: context and generation tokens per answer, sources."""
    with ctx.db.read() as session:
        conversation = conversations.get_conversation(
            session, account_id=account_id, conversation_id=conversation_id
        )
        return conversations.conversation_dict(conversation) | {
            "messages": conversations.message_dicts(session, conversation_id=conversation.id)
        }
