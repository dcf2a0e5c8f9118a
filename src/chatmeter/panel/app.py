"""The control panel on the app: its static files, one router per area under ``/panel``
(``pages/``), the sign-in redirect, and the "not found" page for any other address."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from chatmeter.panel.deps import MaybeViewerDep, NoSuchPage, SignInRequired
from chatmeter.panel.limits import SignInLimiter
from chatmeter.panel.pages import (
    answers,
    api_keys,
    assistants,
    auto_topup,
    billing,
    conversations,
    dashboard,
    invoicing,
    password,
    settings,
    sign_in,
    team,
    training,
    usage,
    verification,
    webhooks,
)
from chatmeter.panel.rendering import HERE, render

AREAS = [
    sign_in,
    password,
    verification,
    dashboard,
    invoicing,  # before billing: /billing/invoices/{id}.pdf is not an invoice page
    billing,
    auto_topup,
    usage,
    assistants,
    training,
    conversations,
    answers,
    settings,
    team,
    api_keys,
    webhooks,
]
# Comes last: any address under /panel that no area answers.
rest = APIRouter(prefix="/panel", include_in_schema=False)


@rest.get("/{rest:path}")
def not_found(request: Request, viewer: MaybeViewerDep) -> Response:
    """Any other address under /panel: a page, not JSON."""
    return render(request, "not_found.html", viewer=viewer, status=404)


def install(app: FastAPI) -> None:
    """Register the panel's routes and static files on the app."""
    app.state.panel_limiter = SignInLimiter(app.state.ctx.settings)
    # The static files first: the panel's catch-all "not found" page would hide them.
    app.mount("/panel/static", StaticFiles(directory=HERE / "static"), name="panel-static")
    for area in AREAS:
        app.include_router(area.router)
    app.include_router(rest)

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/panel/sign-in", status_code=303)

    @app.exception_handler(NoSuchPage)
    async def _not_found(request: Request, _exc: Exception) -> Response:
        viewer = getattr(request.state, "viewer", None)
        return await run_in_threadpool(not_found, request, viewer)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/panel/dashboard", status_code=303)
