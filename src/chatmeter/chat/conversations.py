"""The customer's view of conversations: lists, one conversation, its messages."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.chat.models import Conversation, Message
from chatmeter.errors import NotFound


def list_conversations(
    session: Session,
    *,
    account_id: int,
    assistant_id: int | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[Conversation]:
    query = select(Conversation).where(Conversation.account_id == account_id)
    if assistant_id is not None:
        query = query.where(Conversation.assistant_id == assistant_id)
    if before is not None:
        query = query.where(Conversation.id < before)
    return list(session.scalars(query.order_by(Conversation.id.desc()).limit(limit)))


def get_conversation(session: Session, *, account_id: int, conversation_id: int) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.account_id != account_id:
        raise NotFound("no such conversation", conversation_id=conversation_id)
    return conversation


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "assistant_id": conversation.assistant_id,
        "message_count": conversation.messages,
        "context_tokens": conversation.context_tokens,
        "generation_tokens": conversation.generation_tokens,
        "tokens": conversation.tokens,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


def message_dicts(session: Session, *, conversation_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    )
    return [
        {
            "id": m.id,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "context_tokens": m.context_tokens,
            "generation_tokens": m.generation_tokens,
            "tokens": m.context_tokens + m.generation_tokens,
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "sources": json.loads(m.sources),
            # How the answer was made ("abstained": it said it did not know; "corrected":
            # the customer's own answer) and the visitor's vote on it, if any.
            "answer_kind": m.answer_kind,
            "cut_off": m.cut_off,
            "rating": {1: "up", -1: "down"}.get(m.rating) if m.rating is not None else None,
            "created_at": m.created_at,
        }
        for m in rows
    ]
