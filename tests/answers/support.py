"""A shop's assistant for the answers tests: asked through the public API, corrected
through the REST API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.answers.models import Correction
from chatmeter.chat.models import Message
from chatmeter.context import Context
from tests.chat.shop import Shop

# Nothing in tests.chat.shop.DOCUMENTS says anything about it.
UNCOVERED = "Do you sell gift cards for birthdays?"
GIFT_CARDS = "Yes: gift cards of 20, 50 and 100 euros, at the counter or by email."


def ask(visitor: TestClient, shop: Shop, message: str, conversation: str | None = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if conversation:
        body["conversation_id"] = conversation
    reply = visitor.post(shop.chat_url, json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def corrections_of(ctx: Context) -> list[tuple[int, int, str, str]]:
    """Every stored correction: (assistant, account, question, answer), by id."""
    with ctx.db.read() as session:
        rows = session.execute(
            select(
                Correction.assistant_id,
                Correction.account_id,
                Correction.question,
                Correction.answer,
            ).order_by(Correction.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def ratings_of(ctx: Context) -> list[tuple[int, int | None]]:
    """Every assistant message's (id, rating), by id."""
    with ctx.db.read() as session:
        rows = session.execute(
            select(Message.id, Message.rating)
            .where(Message.role == "assistant")
            .order_by(Message.id)
        ).all()
    return [(r[0], r[1]) for r in rows]
