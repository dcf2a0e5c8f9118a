"""The operator's view of the web app: request ids, ``/readyz``, ``/metrics``, chat timing.

**Request ids.** Every response carries ``X-Request-Id``: the one the reverse proxy
sent, when the request comes from a trusted proxy (``CHATMETER_TRUSTED_PROXIES``)
and the value is short and plain; otherwise a new random one (a visitor cannot
choose the id that ties lines in the operator's logs together). It is in every log
line written while the request is served (``chatmeter.telemetry.logs``).

**Who may read /metrics.** A request bearing ``Authorization: Bearer
<CHATMETER_METRICS_TOKEN>``, or one whose client address is in
``CHATMETER_METRICS_NETWORKS`` (default: this machine). A request that arrives
with ``X-Forwarded-For`` or ``Forwarded`` came through a proxy: it is judged by
the client address that a trusted proxy forwarded, and refused when the proxy is
not trusted, so a reverse proxy on this machine never opens the metrics to the
internet. Everyone else gets 403.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatmeter.config import Settings
from chatmeter.errors import ChatmeterError
from chatmeter.http.client import client_address, in_networks
from chatmeter.ops import exposition
from chatmeter.ops.health import Readiness
from chatmeter.telemetry import metrics
from chatmeter.telemetry.logs import REQUEST_ID, new_request_id, usable_request_id
from chatmeter.web.deps import ContextDep

access_log = logging.getLogger("chatmeter.access")
router = APIRouter(include_in_schema=False)


class RequestContext:
    """Gives each request its id (echoed in ``X-Request-Id``) and logs one line for it."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request_id = self._trusted_id(request) or new_request_id()
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": client_address(request, self.settings),
                    },
                )
            REQUEST_ID.reset(token)

    def _trusted_id(self, request: Request) -> str | None:
        trusted = self.settings.trusted_networks
        peer = request.client.host if request.client else ""
        if trusted and in_networks(peer, trusted):
            return usable_request_id(request.headers.get("x-request-id"))
        return None


def may_read_metrics(request: Request, settings: Settings) -> bool:
    """The rule in this module's docstring."""
    token = settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    peer = request.client.host if request.client else ""
    forwarded = "x-forwarded-for" in request.headers or "forwarded" in request.headers
    if forwarded and not in_networks(peer, settings.trusted_networks):
        return False  # a proxy we do not know relayed it: from anywhere
    return in_networks(client_address(request, settings), settings.metrics_allowed_networks)


@router.get("/readyz")
async def readyz(request: Request, ctx: ContextDep) -> JSONResponse:
    """200 when this process may take traffic; 503 naming the part that failed."""
    readiness: Readiness = request.app.state.readiness
    report = await run_in_threadpool(readiness.report)
    return JSONResponse(
        report.as_json(),
        status_code=200 if report.ready else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/metrics")
async def prometheus_metrics(request: Request, ctx: ContextDep) -> Response:
    """Prometheus's text format, for the trusted networks or the token only."""
    if not may_read_metrics(request, ctx.settings):
        return JSONResponse(
            {
                "error": {
                    "code": "forbidden",
                    "message": "metrics are served to CHATMETER_METRICS_NETWORKS or with "
                    "CHATMETER_METRICS_TOKEN only",
                    "details": {},
                }
            },
            status_code=403,
        )
    body = await run_in_threadpool(exposition.render, ctx)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


# --- a chat turn's figures ----------------------------------------------------------------

_REFUSALS = {"busy", "rate_limited", "unavailable", "conversation_full"}


def count_refusal(exc: ChatmeterError) -> None:
    """A turn refused before anything was reserved."""
    metrics.turn_refused(exc.code if exc.code in _REFUSALS else "invalid")


async def timed(
    events: AsyncGenerator[dict[str, Any], None], started: float
) -> AsyncGenerator[dict[str, Any], None]:
    """Pass a turn's events on, timing its first piece of text and its end (``done``)."""
    first = True
    try:
        async for event in events:
            kind = event.get("type")
            if kind == "delta" and first:
                first = False
                metrics.FIRST_TOKEN_SECONDS.observe(time.perf_counter() - started)
            elif kind in ("done", "error"):
                metrics.TURN_SECONDS.observe(time.perf_counter() - started)
            yield event
    finally:
        await events.aclose()  # a visitor who left: the turn frees its place and settles
