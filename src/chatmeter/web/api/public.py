"""The visitor-facing chat API: no API key, the assistant's public key in the path.

Whatever goes wrong for a reason of the customer's (no such assistant, out of
tokens, model down), the visitor gets the same 503 "unavailable" answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import Field, StrictStr

from chatmeter.chat import service as chat
from chatmeter.web.deps import ContextDep
from chatmeter.web.schemas import Strict

router = APIRouter(tags=["public"])


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
