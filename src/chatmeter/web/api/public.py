"""The visitor-facing API: no API key, the assistant's public key in the path.

Whatever goes wrong for a reason of the customer's (no such assistant, out of
tokens, model down), the visitor gets the same 503 "unavailable" answer, and
the widget's settings the same empty 404. Which websites may call these from
a browser is decided before they run, by ``chatmeter.web.widget.PublicOrigins``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, StrictStr
from starlette.concurrency import run_in_threadpool

from chatmeter.answers import feedback
from chatmeter.assistants import service as assistants
from chatmeter.chat import admission, streaming
from chatmeter.errors import ChatmeterError
from chatmeter.http.client import visitor_key
from chatmeter.http.sse import EventStream
from chatmeter.web import observability
from chatmeter.web.deps import ContextDep, IdPath
from chatmeter.web.schemas import Strict
from chatmeter.widget import texts

router = APIRouter(tags=["public"])

# The widget asks on every page load, so a purchase brings it back on the next one.
NO_STORE = {"Cache-Control": "no-store"}
# The browser's languages, as the widget sends them (``navigator.languages``); a
# longer list is not a browser's and is answered in English.
MAX_LANG = 200


class ChatIn(Strict):
    message: Annotated[StrictStr, Field(min_length=1, max_length=100_000)]
    conversation_id: Annotated[StrictStr, Field(max_length=40)] | None = None


@router.post(
    "/public/{public_key}/chat",
    responses={
        200: {"content": {"text/event-stream": {}}},
        409: {"description": "conversation_full: start a new conversation"},
        429: {"description": "rate_limited"},
        503: {"description": "unavailable, or busy (with Retry-After)"},
    },
)
async def public_chat(public_key: str, body: ChatIn, request: Request, ctx: ContextDep) -> Any:
    """Ask an assistant; answers as Server-Sent Events when asked for ``text/event-stream``.

    The answer waits for the model in a bounded queue; when the queue is full the
    answer is a quick 503 ``busy`` with ``Retry-After``, and nothing is reserved.
    """
    visitor = visitor_key(request, ctx.settings)
    started = time.perf_counter()
    try:
        turn = await run_in_threadpool(
            admission.start_turn,
            ctx,
            public_key=public_key,
            message=body.message,
            conversation_id=body.conversation_id,
            visitor=visitor,
            queue=True,
        )
    except ChatmeterError as refused:
        observability.count_refusal(refused)
        raise
    events = observability.timed(streaming.events(turn), started)
    if "text/event-stream" in request.headers.get("accept", ""):
        return EventStream(events)  # a visitor who leaves: it settles itself
    async with contextlib.aclosing(events):
        return turn.result([event async for event in events])


class RatingIn(Strict):
    conversation_id: Annotated[StrictStr, Field(min_length=1, max_length=40)]
    rating: Literal["up", "down"]


@router.post(
    "/public/{public_key}/messages/{message_id}/rating",
    responses={
        404: {"description": "no such answer in this visitor's conversation"},
        429: {"description": "rate_limited"},
    },
)
def rate_answer(
    public_key: str, message_id: IdPath, body: RatingIn, request: Request, ctx: ContextDep
) -> dict[str, Any]:
    """The visitor's vote on an answer: ``up`` or ``down``; voting again changes the vote."""
    return feedback.rate(
        ctx,
        public_key=public_key,
        conversation_id=body.conversation_id,
        message_id=message_id,
        rating=body.rating,
        visitor=visitor_key(request, ctx.settings),
    )


@router.get(
    "/public/{public_key}/widget",
    responses={
        200: {
            "description": "the widget's title, colour, position, welcome message, theme, "
            "and its texts in the visitor's language"
        },
        404: {"description": "no widget (unknown or inactive assistant); empty body"},
        403: {"description": "called from a website the assistant is not allowed on"},
    },
)
def widget_settings(
    public_key: str, request: Request, ctx: ContextDep, lang: str | None = None
) -> Response:
    """What the embedded widget shows; an empty 404 tells it to show nothing at all.

    Its texts are in the first shipped language among ``lang`` (the browser's
    languages, comma-separated, as the widget sends them) or else the request's
    ``Accept-Language``, with the customer's own wording over them.
    """
    language = visitor_language(lang, request.headers.get("accept-language", ""))
    with ctx.db.read() as session:
        assistant = assistants.visible_by_public_key(
            session, public_key=public_key, now=ctx.clock.now()
        )
        if assistant is None:
            return Response(status_code=404, headers=NO_STORE)
        settings = {
            "title": assistant.widget_title or assistant.name,
            "color": assistant.widget_color,
            "position": assistant.widget_position,
            "welcome_message": assistant.welcome_message,
            "max_message_chars": ctx.settings.chat_max_message_chars,
            "theme": assistant.widget_theme,
            "lang": language,
            "texts": texts.texts_for(language, assistant.texts),
        }
    return JSONResponse(settings, headers=NO_STORE)


def visitor_language(lang: str | None, accept_language: str) -> str:
    """The shipped language to answer in: a visitor's odd ``lang`` gets English, not an error."""
    if lang is None:
        return texts.language_of(texts.accept_language(accept_language[:MAX_LANG]))
    if len(lang) > MAX_LANG:
        return texts.DEFAULT_LANGUAGE
    return texts.language_of(lang.split(","))
