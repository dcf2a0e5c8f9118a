"""The widget's side of the web app: its script, and which websites may call the public API.

Browsers send ``Origin`` with every cross-site request, so the server, not the
script, decides where an assistant runs: ``PublicOrigins`` answers requests to
``/api/v1/public/{key}/widget``, ``/chat`` and an answer's ``/rating`` from any other
website with 403, and gives CORS headers to the assistant's allowed domains only. A request
without ``Origin`` is not a cross-site browser request (another server using
the API, or a page of Chatmeter's own fetching the widget settings) and passes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from importlib import resources

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatmeter.assistants import service as assistants
from chatmeter.context import Context
from chatmeter.widget.origins import origin_allowed, parse_origin

router = APIRouter(include_in_schema=False)

# Long enough that a visitor's next page load needs no request, short enough
# that a fix reaches every customer's site within the hour; the ETag makes the
# revalidation after that cheap.
SCRIPT_CACHE = "public, max-age=600, stale-while-revalidate=3600"
PUBLIC_PATH = re.compile(r"^/api/v1/public/([^/]+)/(chat|widget|messages/[^/]+/rating)$")
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Allow-Headers": "Content-Type, Accept",
    "Access-Control-Max-Age": "600",
}
FORBIDDEN = {"error": {"code": "forbidden", "message": "This website may not use this assistant."}}


# After markdown.js: the stylesheet (styles.js), then the widget itself.
WIDGET_PARTS = ("styles.js", "widget.js")


@functools.cache
def _script(name: str) -> tuple[bytes, str]:
    """A script as served (``widget.js`` or ``markdown.js``), and its ETag over the whole."""
    folder = resources.files("chatmeter.widget")
    # The Markdown renderer (``markdown.js`` defines ``ChatmeterMarkdown``) comes first
    # in both, inside one function scope: the widget adds no global to a customer's
    # page, and the renderer on its own is ``window.ChatmeterMarkdown`` for our pages.
    parts = [folder.joinpath("markdown.js").read_text(encoding="utf-8")]
    if name == "widget.js":
        parts += [folder.joinpath(f).read_text(encoding="utf-8") for f in WIDGET_PARTS]
    else:
        parts.append("window.ChatmeterMarkdown = ChatmeterMarkdown;\n")
    body = ('(() => {\n"use strict";\n' + "\n".join(parts) + "})();\n").encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def _serve(name: str, request: Request) -> Response:
    body, etag = _script(name)
    headers = {
        "Cache-Control": SCRIPT_CACHE,
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)


@router.get("/widget.js")
def widget_script(request: Request) -> Response:
    """The embeddable script: ``<script src=".../widget.js" data-assistant="pk_..." async>``."""
    return _serve("widget.js", request)


@router.get("/widget/markdown.js")
def markdown_script(request: Request) -> Response:
    """The widget's Markdown renderer alone, as ``window.ChatmeterMarkdown.render(text,
    document)``, for Chatmeter's own pages to show answers as the widget does."""
    return _serve("markdown.js", request)


class PublicOrigins:
    """Refuse the public widget and chat endpoints to websites the assistant is not allowed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PUBLIC_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        headers = request.headers
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, _vary(send))
            return
        ctx: Context = scope["app"].state.ctx
        domains = await run_in_threadpool(_allowed_domains, ctx, match[1])
        preflight = request.method == "OPTIONS" and "access-control-request-method" in headers
        if domains is None and not preflight:
            # No such assistant: its own "unavailable" answer, unreadable cross-site.
            await self.app(scope, receive, _vary(send))
        elif domains is None or not _allowed(origin, domains, request, ctx):
            await _forbidden(send, json_body=match[2] != "widget")
        elif preflight:
            await _respond(
                send, 204, b"", {"Access-Control-Allow-Origin": origin} | PREFLIGHT_HEADERS
            )
        else:
            await self.app(scope, receive, _vary(send, allow=origin))


def _allowed_domains(ctx: Context, public_key: str) -> list[str] | None:
    with ctx.db.read() as session:
        assistant = assistants.by_public_key(session, public_key=public_key)
        return None if assistant is None else assistant.domains


def _allowed(origin: str, domains: list[str], request: Request, ctx: Context) -> bool:
    site = parse_origin(origin)
    # Chatmeter's own pages (a preview in the control panel) may always use the widget.
    own = {parse_origin(str(request.base_url)), parse_origin(ctx.settings.base_url)}
    return site is not None and (site in own or origin_allowed(origin, domains))


def _vary(send: Send, *, allow: str | None = None) -> Send:
    """``send`` that marks the answer as depending on ``Origin`` and, for an allowed one,
    lets that page read it."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers.add_vary_header("Origin")
            if allow is not None:
                headers["Access-Control-Allow-Origin"] = allow
        await send(message)

    return wrapped


async def _forbidden(send: Send, *, json_body: bool) -> None:
    body = json.dumps(FORBIDDEN).encode() if json_body else b""
    headers = {"Content-Type": "application/json"} if json_body else {}
    await _respond(send, 403, body, headers | {"Cache-Control": "no-store"})


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = Headers(headers | {"Vary": "Origin", "Content-Length": str(len(body))}).raw
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
