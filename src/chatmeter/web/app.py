"""The FastAPI application: the REST API under /api/v1, the widget and the control panel."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from chatmeter import __version__
from chatmeter.context import Context
from chatmeter.http.limits import MULTIPART_OVERHEAD, BodySizeLimit
from chatmeter.ops import exposition
from chatmeter.ops.health import Readiness
from chatmeter.ops.processes import CountRequests, process_started
from chatmeter.panel.app import install as install_panel
from chatmeter.training.service import MAX_FILES_PER_UPLOAD
from chatmeter.web import errors, observability, payments, widget
from chatmeter.web.api import (
    account,
    answers,
    assistants,
    auto_topup,
    billing,
    conversations,
    forecast,
    invoicing,
    keys,
    public,
    tokens,
    webhooks,
)
from chatmeter.web.draining import DrainingHttpToolsProtocol
from chatmeter.web.https import StrictTransportSecurity

# How uvicorn must serve the app. Its own proxy-header handling believes
# X-Forwarded-For from 127.0.0.1 by default, so that any local process could pose
# as any visitor; the app reads the header itself, from CHATMETER_TRUSTED_PROXIES
# only (chatmeter.http.client). A stopping process answers the requests already on
# their way (chatmeter.web.draining).
SERVER_OPTIONS: dict[str, Any] = {
    "proxy_headers": False,
    "server_header": False,
    "http": DrainingHttpToolsProtocol,
}

log = logging.getLogger("chatmeter.serve")


def from_environment() -> FastAPI:
    """The app of one of several web processes (``chatmeter serve --workers N``).

    uvicorn calls this factory in each child it starts: the child reads the same
    settings as its parent, builds its own Context (its own database pool, models and
    queues) and loads its models before it takes its first connection, so that no
    visitor waits for a model to load. Migrations, the demo account and the
    in-process worker are the parent's, done once (``chatmeter.cli.running``).

    A child that cannot build its app (a model that will not load) says why in the
    configured log format and exits with uvicorn's ``STARTUP_FAILURE``: its supervisor
    then stops the server rather than start it again (``chatmeter.ops.supervisor``).
    """
    from uvicorn.config import STARTUP_FAILURE

    from chatmeter.chat.admission import warm_up
    from chatmeter.config import Settings
    from chatmeter.ops.collector import ready_to_serve
    from chatmeter.telemetry.logs import configure as configure_logs

    settings = Settings()
    configure_logs(settings.log_format, settings.log_level)
    try:
        ctx = Context.from_settings(settings)
        warm_up(ctx)
        app = create_app(ctx, run_worker=False)
        ready_to_serve()  # what startup loaded is never scanned by the collector again
        return app
    except Exception as exc:
        log.exception("web process %d could not start: %s", os.getpid(), exc)
        raise SystemExit(STARTUP_FAILURE) from exc


def create_app(ctx: Context, *, run_worker: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        process_started()
        worker = None
        if run_worker:
            from chatmeter.jobs.worker import Worker

            worker = Worker(ctx)
            ctx.db.wake_worker = worker.wake
            worker.start()
        yield
        if worker is not None:
            worker.stop()
        app.state.readiness.close()
        exposition.process_exited(os.getpid())  # its queue gauges leave the sums

    app = FastAPI(
        title="Chatmeter API",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.readiness = Readiness(ctx)
    errors.install(app)
    api = APIRouter(prefix="/api/v1")
    for module in (
        tokens,
        billing,
        auto_topup,
        account,
        keys,
        assistants,
        answers,
        conversations,
        public,
    ):
        api.include_router(module.router)
    api.include_router(invoicing.router)  # invoice PDFs and billing details
    api.include_router(forecast.router)
    api.include_router(webhooks.router)
    app.include_router(api)
    app.include_router(widget.router)
    app.include_router(payments.router)
    app.include_router(observability.router)
    install_panel(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Alive: the process answers. Whether it may take traffic is ``/readyz``."""
        return {"status": "ok"}

    app.add_middleware(
        BodySizeLimit,
        max_bytes=ctx.settings.max_body_bytes,
        upload_ceiling=ctx.settings.max_upload_bytes * MAX_FILES_PER_UPLOAD + MULTIPART_OVERHEAD,
    )
    app.add_middleware(widget.PublicOrigins)  # other sites are refused first
    if ctx.settings.base_url.startswith("https://"):
        app.add_middleware(StrictTransportSecurity)  # on every response
    app.add_middleware(CountRequests)  # which of several processes answers (ops.processes)
    # Outermost: every response carries its request id, and every log line of it too.
    app.add_middleware(observability.RequestContext, settings=ctx.settings)
    return app
