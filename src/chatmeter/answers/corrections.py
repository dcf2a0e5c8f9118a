"""The customer's corrections: add, change, remove and list an assistant's Q&A pairs.

A correction answers its question, and questions near enough to it, with the
customer's own words (``matching.best_correction``). The question's embedding
is computed before the transaction opens (``save``): the model is slow, and a
unit of work never waits for it. Another account's assistant or correction is
``NotFound``, exactly as one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatmeter.answers import matching
from chatmeter.answers.models import Correction
from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.errors import Conflict, InvalidInput, NotFound
from chatmeter.knowledge.embeddings import Embedder
from chatmeter.services import Basics
from chatmeter.storable import NUL_MESSAGE, has_nul

MAX_QUESTION_CHARS = 500
MAX_ANSWER_CHARS = 4000

_PUNCTUATION = re.compile(r"[^\w\s]|_", re.UNICODE)


class CorrectionServices(Basics, Protocol):
    """What saving a correction needs of the application (``chatmeter.context.Context``)."""

    @property
    def embedder(self) -> Embedder: ...


def normalised(question: str) -> str:
    """A question as insights group it and corrections match it exactly: lower case,
    punctuation removed, one space between words."""
    text = unicodedata.normalize("NFKC", question).lower()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def checked(question: object, answer: object) -> tuple[str, str]:
    """The question and answer trimmed, or ``InvalidInput`` naming the field."""
    return (
        _text(question, "question", MAX_QUESTION_CHARS),
        _text(answer, "answer", MAX_ANSWER_CHARS),
    )


def _text(value: object, field: str, most: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"the {field} must be text", field=field)
    text = value.strip()
    if not text:
        raise InvalidInput(f"the {field} is empty", field=field)
    if has_nul(text):
        raise InvalidInput(f"the {field} {NUL_MESSAGE}", field=field)
    if len(text) > most:
        raise InvalidInput(f"the {field} is longer than {most:,} characters", field=field)
    return text


# --- the use cases: check, embed outside any transaction, then one unit of work ---------


def save(
    ctx: CorrectionServices,
    *,
    account_id: int,
    assistant_id: int,
    question: object,
    answer: object,
    correction_id: int | None = None,
) -> dict[str, Any]:
    """Add a correction (``correction_id`` None) or change one; returns it as a dict.

    A new correction whose question is one the assistant has a correction for
    already (the same once ``normalised``) replaces that one's answer.
    """
    question, answer = checked(question, answer)
    same_question = False
    with ctx.db.read() as session:
        assistants.get_assistant(session, account_id=account_id, assistant_id=assistant_id)
        if correction_id is not None:
            old = get(
                session,
                account_id=account_id,
                assistant_id=assistant_id,
                correction_id=correction_id,
            )
            same_question = old.question == question
    embedding = None
    if correction_id is None or not same_question:
        embedding = matching.encode(ctx.embedder.embed([question])[0])
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        if correction_id is None:
            assert embedding is not None
            saved = add(
                uow.session,
                account_id=account_id,
                assistant_id=assistant_id,
                question=question,
                answer=answer,
                embedding=embedding,
                now=now,
            )
        else:
            saved = update(
                uow.session,
                account_id=account_id,
                assistant_id=assistant_id,
                correction_id=correction_id,
                question=question,
                answer=answer,
                embedding=embedding,
                now=now,
            )
        uow.commit()
        return correction_dict(saved)


def remove(ctx: Basics, *, account_id: int, assistant_id: int, correction_id: int) -> None:
    """Delete a correction; the next question it answered is answered from the documents."""
    with ctx.db.uow() as uow:
        delete(
            uow.session,
            account_id=account_id,
            assistant_id=assistant_id,
            correction_id=correction_id,
        )
        uow.commit()


# --- the steps: they take a session and never commit ---------------------------------


def add(
    session: Session,
    *,
    account_id: int,
    assistant_id: int,
    question: str,
    answer: str,
    embedding: bytes,
    now: dt.datetime,
) -> Correction:
    """A new correction, or the existing one for the same question with this answer."""
    _locked_assistant(session, account_id=account_id, assistant_id=assistant_id)
    existing = _same_question(session, assistant_id=assistant_id, question=question)
    if existing is not None:
        existing.question, existing.answer = question, answer
        existing.embedding, existing.updated_at = embedding, now
        return existing
    count = session.scalar(
        select(func.count()).select_from(Correction).where(Correction.assistant_id == assistant_id)
    )
    if (count or 0) >= matching.MAX_CORRECTIONS:
        raise InvalidInput(
            f"an assistant keeps at most {matching.MAX_CORRECTIONS:,} corrections; "
            "remove some before adding more",
            field="question",
        )
    correction = Correction(
        account_id=account_id,
        assistant_id=assistant_id,
        question=question,
        answer=answer,
        embedding=embedding,
        created_at=now,
        updated_at=now,
    )
    session.add(correction)
    session.flush()
    return correction


def update(
    session: Session,
    *,
    account_id: int,
    assistant_id: int,
    correction_id: int,
    question: str,
    answer: str,
    embedding: bytes | None,
    now: dt.datetime,
) -> Correction:
    """Change a correction's question and answer (``embedding`` None: the question's is kept)."""
    _locked_assistant(session, account_id=account_id, assistant_id=assistant_id)
    correction = get(
        session, account_id=account_id, assistant_id=assistant_id, correction_id=correction_id
    )
    other = _same_question(session, assistant_id=assistant_id, question=question)
    if other is not None and other.id != correction.id:
        raise Conflict(
            "another correction answers this question already; change that one instead",
            correction_id=other.id,
        )
    if embedding is None and question != correction.question:
        raise ValueError("a changed question needs its embedding")
    correction.question, correction.answer, correction.updated_at = question, answer, now
    if embedding is not None:
        correction.embedding = embedding
    return correction


def delete(session: Session, *, account_id: int, assistant_id: int, correction_id: int) -> None:
    session.delete(
        get(session, account_id=account_id, assistant_id=assistant_id, correction_id=correction_id)
    )


def get(session: Session, *, account_id: int, assistant_id: int, correction_id: int) -> Correction:
    assistants.get_assistant(session, account_id=account_id, assistant_id=assistant_id)
    correction = session.get(Correction, correction_id)
    if (
        correction is None
        or correction.account_id != account_id
        or correction.assistant_id != assistant_id
    ):
        raise NotFound("no such correction", correction_id=correction_id)
    return correction


def list_corrections(session: Session, *, account_id: int, assistant_id: int) -> list[Correction]:
    """The assistant's corrections, newest first."""
    assistants.get_assistant(session, account_id=account_id, assistant_id=assistant_id)
    return list(
        session.scalars(
            select(Correction)
            .where(Correction.assistant_id == assistant_id)
            .order_by(Correction.id.desc())
            .limit(matching.MAX_CORRECTIONS)
        )
    )


def covered(session: Session, *, assistant_id: int) -> set[str]:
    """The normalised questions the assistant's corrections answer."""
    rows = session.scalars(
        select(Correction.question)
        .where(Correction.assistant_id == assistant_id)
        .limit(matching.MAX_CORRECTIONS)
    )
    return {normalised(q) for q in rows}


def correction_dict(correction: Correction) -> dict[str, Any]:
    return {
        "id": correction.id,
        "assistant_id": correction.assistant_id,
        "question": correction.question,
        "answer": correction.answer,
        "created_at": correction.created_at,
        "updated_at": correction.updated_at,
    }


def _locked_assistant(session: Session, *, account_id: int, assistant_id: int) -> Assistant:
    """The assistant, locked (PostgreSQL) so that concurrent adds count one after another."""
    assistant = session.scalar(
        select(Assistant).where(Assistant.id == assistant_id).with_for_update()
    )
    if assistant is None or assistant.account_id != account_id or assistant.deleted_at:
        raise NotFound("no such assistant", assistant_id=assistant_id)
    return assistant


def _same_question(session: Session, *, assistant_id: int, question: str) -> Correction | None:
    wanted = normalised(question)
    for correction in session.scalars(
        select(Correction)
        .where(Correction.assistant_id == assistant_id)
        .order_by(Correction.id.desc())
        .limit(matching.MAX_CORRECTIONS)
    ):
        if normalised(correction.question) == wanted:
            return correction
    return None
