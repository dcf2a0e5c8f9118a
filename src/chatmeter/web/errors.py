"""Errors are answered in one place: as JSON, ``{"error": {"code", "message", "details"?}}``,
or, for a route that names the page showing its refusals (``request.state.error_page``,
set by ``panel.deps.refused_by``), as that page: the panel's form again, with the message.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatmeter import validation
from chatmeter.errors import ChatmeterError


def install(app: FastAPI) -> None:
    @app.exception_handler(ChatmeterError)
    async def _chatmeter_error(request: Request, exc: ChatmeterError) -> Response:
        page: Callable[[ChatmeterError], Response] | None = getattr(
            request.state, "error_page", None
        )
        if page is not None:  # it may read the database: off the event loop
            return await run_in_threadpool(page, exc)
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        found = validation.messages(exc.errors())
        problems = [{"field": field, "message": message} for field, message in found.items()]
        return JSONResponse(
            {
                "error": {
                    "code": "invalid_input",
                    "message": validation.summary(found),
                    "details": {"problems": problems},
                }
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=exc.headers,
        )
