"""What an assistant's conversations teach its customer: the questions it could not
answer, the answers visitors rated down, and the questions asked most.

Every read is bounded (``WINDOW_DAYS``, and a cap on the rows read), so a busy
assistant's page costs the same as a quiet one's. Each question says whether a
correction covers it now: the same question once ``corrections.normalised``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from chatmeter.answers import corrections
from chatmeter.answers.modes import Kind
from chatmeter.assistants import service as assistants
from chatmeter.chat.models import Conversation, Message

WINDOW_DAYS = 30
MAX_ITEMS = 50  # unanswered questions and poorly rated answers shown
MAX_FREQUENT = 20
MAX_READ = 5000  # user messages read for the most frequent questions
MAX_FLAGGED_READ = 500  # abstained or rated answers read


@dataclass(frozen=True)
class Question:
    question: str  # as last asked
    count: int
    last_asked: dt.datetime
    conversation_id: int  # where it was last asked
    covered: bool  # a correction answers it now


@dataclass(frozen=True)
class RatedAnswer:
    question: str
    answer: str
    rated_at: dt.datetime
    conversation_id: int
    message_id: int
    covered: bool


@dataclass(frozen=True)
class Insights:
    unanswered: list[Question]
    poorly_rated: list[RatedAnswer]
    frequent: list[Question]


def insights(session: Session, *, account_id: int, assistant_id: int, now: dt.datetime) -> Insights:
    """The three lists for one of the account's assistants (``NotFound`` for another's)."""
    assistants.get_assistant(session, account_id=account_id, assistant_id=assistant_id)
    since = now - dt.timedelta(days=WINDOW_DAYS)
    covered = corrections.covered(session, assistant_id=assistant_id)
    return Insights(
        unanswered=_unanswered(session, assistant_id, since, covered),
        poorly_rated=_poorly_rated(session, assistant_id, since, covered),
        frequent=_frequent(session, assistant_id, since, covered),
    )


def _asked_before(reply: Any) -> Any:
    """The visitor's message that an assistant message answers: the user message of its
    conversation just before it."""
    asked = aliased(Message)
    return (
        select(asked.content)
        .where(
            asked.conversation_id == reply.conversation_id,
            asked.role == "user",
            asked.id < reply.id,
        )
        .order_by(asked.id.desc())
        .limit(1)
        .correlate(reply)
        .scalar_subquery()
    )


def _unanswered(
    session: Session, assistant_id: int, since: dt.datetime, covered: set[str]
) -> list[Question]:
    rows = session.execute(
        select(Message.conversation_id, Message.created_at, _asked_before(Message))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.assistant_id == assistant_id,
            Message.answer_kind == Kind.ABSTAINED.value,
            Message.created_at >= since,
        )
        .order_by(Message.id.desc())
        .limit(MAX_FLAGGED_READ)
    ).all()
    return _grouped(
        [(q, when, c) for c, when, q in rows if q], covered, most=MAX_ITEMS, by_count=False
    )


def _poorly_rated(
    session: Session, assistant_id: int, since: dt.datetime, covered: set[str]
) -> list[RatedAnswer]:
    rows = session.execute(
        select(
            Message.id,
            Message.conversation_id,
            Message.content,
            Message.rated_at,
            Message.created_at,
            _asked_before(Message),
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.assistant_id == assistant_id,
            Message.rating == -1,
            Message.created_at >= since,
        )
        .order_by(Message.id.desc())
        .limit(MAX_ITEMS)
    ).all()
    return [
        RatedAnswer(
            question=question or "",
            answer=content,
            rated_at=rated_at or created_at,
            conversation_id=conversation_id,
            message_id=message_id,
            covered=corrections.normalised(question or "") in covered,
        )
        for message_id, conversation_id, content, rated_at, created_at, question in rows
    ]


def _frequent(
    session: Session, assistant_id: int, since: dt.datetime, covered: set[str]
) -> list[Question]:
    rows = session.execute(
        select(Message.content, Message.created_at, Message.conversation_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.assistant_id == assistant_id,
            Message.role == "user",
            Message.created_at >= since,
        )
        .order_by(Message.id.desc())
        .limit(MAX_READ)
    ).all()
    return _grouped([(q, w, c) for q, w, c in rows], covered, most=MAX_FREQUENT, by_count=True)


def _grouped(
    asked: list[tuple[str, dt.datetime, int]],
    covered: set[str],
    *,
    most: int,
    by_count: bool,
) -> list[Question]:
    """Questions grouped by their normalised form, newest first in ``asked``; the most
    asked first (``by_count``) or the most recently asked first."""
    groups: dict[str, Question] = {}
    for question, when, conversation_id in asked:
        key = corrections.normalised(question)
        if not key:
            continue
        seen = groups.get(key)
        if seen is None:
            groups[key] = Question(question, 1, when, conversation_id, key in covered)
        else:
            groups[key] = Question(
                seen.question, seen.count + 1, seen.last_asked, seen.conversation_id, seen.covered
            )
    found = list(groups.values())  # in order of their last asking, newest first
    if by_count:
        found.sort(key=lambda q: -q.count)  # stable: among equals, the most recent first
    return found[:most]


def question_dict(question: Question) -> dict[str, Any]:
    return {
        "question": question.question,
        "count": question.count,
        "last_asked": question.last_asked,
        "conversation_id": question.conversation_id,
        "covered": question.covered,
    }


def rated_dict(rated: RatedAnswer) -> dict[str, Any]:
    return {
        "question": rated.question,
        "answer": rated.answer,
        "rated_at": rated.rated_at,
        "conversation_id": rated.conversation_id,
        "message_id": rated.message_id,
        "covered": rated.covered,
    }


def insights_dict(found: Insights) -> dict[str, Any]:
    return {
        "unanswered": [question_dict(q) for q in found.unanswered],
        "poorly_rated": [rated_dict(r) for r in found.poorly_rated],
        "frequent": [question_dict(q) for q in found.frequent],
    }
