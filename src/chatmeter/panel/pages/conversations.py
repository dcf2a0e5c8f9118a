"""The test chat and the conversations pages of an assistant.

A test chat is a real conversation: the same ``admission.start_turn`` a visitor's
message goes through, so the answer, its sources and its token figures are
exactly what a visitor would get, and it is paid for from the balance like any
other. Its conversation is recorded with the visitor ``panel:test`` so the
conversations page can mark it. Unlike the widget, the panel may say why an
assistant cannot answer: when tokens run out it says so and offers more.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from chatmeter.billing.summary import is_active
from chatmeter.chat import admission, conversations, streaming
from chatmeter.chat.models import Message
from chatmeter.chat.turn import Turn
from chatmeter.context import Context
from chatmeter.errors import Busy, InsufficientTokens, InvalidInput, NotFound, Unavailable
from chatmeter.formatting import local_time
from chatmeter.http.sse import EventStream
from chatmeter.ledger.models import Balance
from chatmeter.panel.assistant_views import (
    TEST_VISITOR,
    BotDep,
    assistant_page,
    owned_assistant,
    parse_id,
)
from chatmeter.panel.deps import (
    BodyDep,
    CheckedScriptDep,
    NoSuchPage,
    Refusal,
    ScriptViewerDep,
    Viewer,
    ViewerDep,
    ctx_of,
    json_refusal,
    problem,
    refused_by,
    sentence,
)
from chatmeter.panel.figures import dashboard_figures, had_tokens

router = APIRouter(prefix="/panel", include_in_schema=False)

PAGE_SIZE = 25
OUT_OF_TOKENS = "you are out of tokens: your assistants cannot answer anyone"
NO_TOKENS_YET = "your account has no tokens yet: an answer uses tokens, as on your website"
NOT_ENOUGH = "there are not enough tokens left for an answer"
MODEL_DOWN = "the model is not available right now; try again in a moment"
MODEL_BUSY = "the model is busy answering others; try again in a moment"


# --- the test chat ------------------------------------------------------------------------


@router.get("/assistants/{assistant_id}/test")
def test_page(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    return assistant_page(
        request,
        viewer,
        "assistant_test.html",
        bot=bot,
        tab="test",
        ready_files=bot["files"].get("ready", 0),
        max_chars=ctx_of(request).settings.chat_max_message_chars,
    )


def _test_chat_refused(request: Request, refused: Refusal) -> Response:
    """Unlike the widget, the panel says why the assistant cannot answer."""
    error = refused.error
    if isinstance(error, Busy):
        response = problem(503, MODEL_BUSY)
        response.headers.update(error.headers)
        return response
    if isinstance(error, Unavailable):
        if isinstance(error.__cause__, InsufficientTokens):
            return _out_of_tokens(NOT_ENOUGH)
        return problem(503, MODEL_DOWN)
    return json_refusal(request, refused)


@router.post("/assistants/{assistant_id}/test-chat", dependencies=[refused_by(_test_chat_refused)])
def test_chat(
    request: Request,
    assistant_id: str,
    viewer: ScriptViewerDep,
    _csrf: CheckedScriptDep,
    raw: BodyDep,
) -> Response:
    """Ask the assistant as a visitor would; the answer streams as Server-Sent Events."""
    ctx = ctx_of(request)
    message, conversation_id = _question(raw)
    with ctx.db.read() as session:
        assistant = owned_assistant(session, viewer, assistant_id)
        if assistant is None:
            raise NotFound("there is no such assistant")
        public_key = assistant.public_key
        balance = session.get(Balance, viewer.account_id)
        first_time = not had_tokens(session, account_id=viewer.account_id)
    if balance is None or not is_active(balance):
        return _out_of_tokens(NO_TOKENS_YET if first_time else OUT_OF_TOKENS)
    turn = admission.start_turn(
        ctx,
        public_key=public_key,
        message=message,
        conversation_id=conversation_id,
        visitor=TEST_VISITOR,
        queue=True,
    )
    return EventStream(_with_figures(ctx, viewer, turn))


def _question(raw: bytes) -> tuple[str, str | None]:
    """``{"message": ..., "conversation_id": ...}``; the message's own limits are the chat's."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise InvalidInput("send a message to ask") from exc
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        raise InvalidInput("send a message to ask", field="message")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and (
        not isinstance(conversation_id, str) or len(conversation_id) > 40
    ):
        conversation_id = None  # not one of ours: start a new conversation
    return body["message"], conversation_id


def _out_of_tokens(message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "out_of_tokens", "message": sentence(message)}}, status_code=402
    )


async def _with_figures(
    ctx: Context, viewer: Viewer, turn: Turn
) -> AsyncGenerator[dict[str, Any], None]:
    """The turn's events; ``done`` also carries the answer's token figures and the balance
    after it, read back from what the turn stored and settled."""
    async with contextlib.aclosing(streaming.events(turn)) as events:
        async for event in events:
            if event["type"] == "done":
                event = event | await run_in_threadpool(_settled, ctx, viewer, turn.hold_id)
                # The customer also sees which of their files each source is.
                event["sources"] = [
                    shown | {"filename": passage.filename}
                    for shown, passage in zip(event["sources"], turn.passages, strict=False)
                ]
            yield event


def _settled(ctx: Context, viewer: Viewer, hold_id: int) -> dict[str, Any]:
    with ctx.db.read() as session:
        answer = session.scalar(
            select(Message).where(Message.hold_id == hold_id, Message.role == "assistant")
        )
        figures = dashboard_figures(
            session,
            settings=ctx.settings,
            account_id=viewer.account_id,
            timezone=viewer.timezone,
            now=ctx.clock.now(),
        )
    context = answer.context_tokens if answer else 0
    response = answer.generation_tokens if answer else 0
    tokens = {"context": context, "response": response, "total": context + response}
    return {"tokens": tokens, "figures": figures}


# --- conversations --------------------------------------------------------------------------


@router.get("/assistants/{assistant_id}/conversations")
def conversations_page(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    before = parse_id(request.query_params.get("before", ""))
    with ctx_of(request).db.read() as session:
        found_rows = conversations.list_conversations(
            session,
            account_id=viewer.account_id,
            assistant_id=bot["id"],
            limit=PAGE_SIZE + 1,
            before=before,
        )
        shown = found_rows[:PAGE_SIZE]
        questions = _first_questions(session, [c.id for c in shown])
        rows = [
            conversations.conversation_dict(c)
            | {
                "test": c.visitor == TEST_VISITOR,
                "started": local_time(c.created_at, viewer.timezone),
                "question": questions.get(c.id, ""),
            }
            for c in shown
        ]
    return assistant_page(
        request,
        viewer,
        "assistant_conversations.html",
        bot=bot,
        tab="conversations",
        rows=rows,
        older=shown[-1].id if len(found_rows) > PAGE_SIZE else None,
        paged=before is not None,
    )


def _first_questions(session: Session, conversation_ids: list[int]) -> dict[int, str]:
    """Each conversation's opening question, to tell them apart in the list."""
    if not conversation_ids:
        return {}
    first = (
        select(func.min(Message.id))
        .where(Message.conversation_id.in_(conversation_ids), Message.role == "user")
        .group_by(Message.conversation_id)
    )
    rows = session.execute(
        select(Message.conversation_id, Message.content).where(Message.id.in_(first))
    )
    return {conversation_id: content for conversation_id, content in rows}


@router.get("/assistants/{assistant_id}/conversations/{conversation_id}")
def conversation_page(
    request: Request, conversation_id: str, viewer: ViewerDep, bot: BotDep
) -> Response:
    with ctx_of(request).db.read() as session:
        try:
            conversation = conversations.get_conversation(
                session,
                account_id=viewer.account_id,
                conversation_id=parse_id(conversation_id) or 0,
            )
        except NotFound:
            raise NoSuchPage from None
        if conversation.assistant_id != bot["id"]:
            raise NoSuchPage
        summary = conversations.conversation_dict(conversation) | {
            "test": conversation.visitor == TEST_VISITOR,
            "started": local_time(conversation.created_at, viewer.timezone),
        }
        messages = [
            m | {"time": local_time(m["created_at"], viewer.timezone)}
            for m in conversations.message_dicts(session, conversation_id=conversation.id)
        ]
    return assistant_page(
        request,
        viewer,
        "assistant_conversation.html",
        bot=bot,
        tab="conversations",
        conversation=summary,
        messages=messages,
    )
