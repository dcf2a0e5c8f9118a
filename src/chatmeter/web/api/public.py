"""The visitor-facing API: no API key, the assistant's public key in the path.

Whatever goes wrong for a reason of the customer's (no such assistant, out of
tokens, model down), the visitor gets the same 503 "unavailable" answer, and
the widget's settings the same empty 404. Which websites may call these from
a browser is decided before they run, by ``chatmeter.web.widget.PublicOrigins``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field, StrictStr

from chatmeter.assistants import service as assistants
from chatmeter.chat import service as chat
from chatmeter.web.deps import ContextDep
from chatmeter.web.schemas import Strict

router = APIRouter(tags=["public"])

# The widget asks on every page load, so a purchase brings it back on the next one.
NO_STORE = {"Cache-Control": "no-store"}


class ChatIn(Strict):
    message: Annotated[StrictStr, Field(min_length=1, max_length=100_000)]
    conversation_id: Annotated[StrictStr, Field(max_length=40)] | None = None


@router.post(
    "/public/{public_key}/chat",
    responses={
        200: {"content": {"text/event-stream": {}}},
        503: {"description": "unavailable"},
        429: {"description": "rate_limited"},
    },
)
def public_chat(public_key: str, body: ChatIn, request: Request, ctx: ContextDep) -> Any:
    """Ask an assistant; answers as Server-Sent Events when asked for ``text/event-stream``."""
    visitor = request.client.host if request.client else "unknown"
    turn = chat.start_turn(
        ctx,
        public_key=public_key,
        message=body.message,
        conversation_id=body.conversation_id,
        visitor=visitor,
    )
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _sse(turn.events()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return turn.run()


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    try:
        for event in events:
            kind = event.pop("type")
            yield f"event: {kind}\ndata: {json.dumps(event, default=str)}\n\n"
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # a visitor who left: the turn settles what was generated


@router.get(
    "/public/{public_key}/widget",
    responses={
        200: {"description": "the widget's title, colour, position and welcome message"},
        404: {"description": "no widget (unknown or inactive assistant); empty body"},
        403: {"description": "called from a website the assistant is not allowed on"},
    },
)
def widget_settings(public_key: str, ctx: ContextDep) -> Response:
    """What the embedded widget shows; an empty 404 tells it to show nothing at all."""
    with ctx.db.read() as session:
        assistant = assistants.visible_by_public_key(session, public_key=public_key)
        if assistant is None:
            return Response(status_code=404, headers=NO_STORE)
        settings = {
            "title": assistant.widget_title or assistant.name,
            "color": assistant.widget_color,
            "position": assistant.widget_position,
            "welcome_message": assistant.welcome_message,
            "max_message_chars": ctx.settings.chat_max_message_chars,
        }
    return JSONResponse(settings, headers=NO_STORE)
