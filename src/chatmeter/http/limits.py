"""Refuse request bodies over their limit before they are read whole.

Every request body may be at most ``max_body_bytes``, whatever content type it
declares and whether or not it declares its length (a chunked body is counted
as it arrives). Only the two upload routes may take more, up to ``ceiling``,
and only once the route itself has authenticated the caller and called
``allow_upload``: until then an upload route is held to the small limit too,
so a stranger cannot make the server read hundreds of megabytes.

A refusal is a 413 with the JSON error body. The app never receives a byte
past the limit: the message that would cross it is not handed on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatmeter.errors import PayloadTooLarge

# POST /api/v1/assistants/{id}/files and the panel's POST /panel/assistants/{id}/files.
UPLOAD_ROUTES = re.compile(r"^/(?:api/v1|panel)/assistants/[^/]+/files/?$")
MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries of a full upload
_SCOPE_KEY = "chatmeter.body_allowance"


class BodyTooLarge(PayloadTooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit:,} bytes", limit=limit)


@dataclass
class Allowance:
    """How much of this request's body the app may read now, and at most."""

    limit: int
    ceiling: int
    declared: int | None
    seen: int = 0
    tripped: bool = False


def is_upload_route(scope: Scope) -> bool:
    return scope.get("method") == "POST" and bool(UPLOAD_ROUTES.match(scope.get("path", "")))


def allow_upload(request: Request) -> None:
    """Raise this request's body limit to the upload ceiling: call only once the caller
    is authenticated. A no-op on a route that is not an upload route."""
    allowance: Allowance | None = request.scope.get(_SCOPE_KEY)
    if allowance is not None:
        allowance.limit = allowance.ceiling


class BodySizeLimit:
    """``max_bytes`` for every body; ``upload_ceiling`` for an upload once it is allowed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, upload_ceiling: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_ceiling = max(upload_ceiling, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ceiling = self.upload_ceiling if is_upload_route(scope) else self.max_bytes
        allowance = Allowance(self.max_bytes, ceiling, _declared_length(scope))
        if allowance.declared is not None and allowance.declared > ceiling:
            await _refuse(send, ceiling)  # nothing read: the declared length says enough
            return
        scope[_SCOPE_KEY] = allowance
        started = False

        async def limited() -> Message:
            if allowance.tripped:
                raise BodyTooLarge(allowance.limit)
            if allowance.declared is not None and allowance.declared > allowance.limit:
                allowance.tripped = True
                raise BodyTooLarge(allowance.limit)
            message = await receive()
            if message["type"] == "http.request":
                allowance.seen += len(message.get("body", b""))
                if allowance.seen > allowance.limit:
                    allowance.tripped = True
                    raise BodyTooLarge(allowance.limit)
            return message

        async def guarded(message: Message) -> None:
            # Whatever the app makes of the refusal (a parse error, a page), the answer is 413.
            nonlocal started
            if allowance.tripped and not started:
                started = True
                await _refuse(send, allowance.limit)
                return
            if allowance.tripped:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except BodyTooLarge:
            if not started:
                await _refuse(send, allowance.limit)
            return


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body: dict[str, Any] = BodyTooLarge(limit).to_dict()
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
