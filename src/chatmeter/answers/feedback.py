"""A visitor rates an answer: up or down, one vote per answer, rate-limited.

The answer is named by what only its visitor holds: the assistant's public key,
the conversation's public id (the visitor's secret) and the message's id. If any
of them does not fit, the answer is the same ``NotFound``, so a stranger learns
nothing about which part was wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from chatmeter.assistants import service as assistants
from chatmeter.chat.models import Conversation, Message
from chatmeter.errors import InvalidInput, NotFound
from chatmeter.services import Basics

if TYPE_CHECKING:
    from chatmeter.chat.limits import ChatLimiter

RATINGS = {"up": 1, "down": -1}
RATING_NAMES = {value: name for name, value in RATINGS.items()}


class FeedbackServices(Basics, Protocol):
    """What rating needs of the application (``chatmeter.context.Context``)."""

    @property
    def limiter(self) -> ChatLimiter: ...


def rate(
    ctx: FeedbackServices,
    *,
    public_key: str,
    conversation_id: str,
    message_id: int,
    rating: str,
    visitor: str,
) -> dict[str, Any]:
    """Record the visitor's vote on an answer (a second vote replaces the first)."""
    if rating not in RATINGS:
        raise InvalidInput('the rating must be "up" or "down"', field="rating")
    # Before any lookup: guessing at answers costs the same as rating them.
    ctx.limiter.check_rating(visitor=visitor)
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        session = uow.session
        assistant = assistants.by_public_key(session, public_key=public_key)
        message = None
        if assistant is not None:
            message = session.scalar(
                select(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(
                    Message.id == message_id,
                    Message.role == "assistant",
                    Conversation.public_id == conversation_id,
                    Conversation.assistant_id == assistant.id,
                )
            )
        if message is None:
            raise NotFound("no such answer")
        message.rating, message.rated_at = RATINGS[rating], now
        uow.commit()
    return {"message_id": message_id, "rating": rating}
