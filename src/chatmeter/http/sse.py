"""Server-Sent Events from an async iterator of events, closed however the response ends."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(StreamingResponse):
    """``text/event-stream`` of ``events``; the iterator is always closed at the end.

    Starlette cancels a response whose client went away but leaves its iterator to
    the garbage collector; closing it here runs the iterator's own cleanup (a chat
    turn frees its place in the queue or stops generating) at once.
    """

    def __init__(self, events: AsyncGenerator[dict[str, Any], None]) -> None:
        self._events = events
        super().__init__(self._encoded(), media_type="text/event-stream", headers=HEADERS)

    async def _encoded(self) -> AsyncIterator[str]:
        async for event in self._events:
            yield encode(event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()


def encode(event: dict[str, Any]) -> str:
    """One event: ``event: <type>`` and the other fields as JSON ``data``."""
    data = dict(event)
    kind = data.pop("type")
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
