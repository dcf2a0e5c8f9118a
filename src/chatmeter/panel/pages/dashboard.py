"""The dashboard: the balance against the limit, the renewal date, the assistants' status;
and the same figures as JSON, for every page to refresh its sidebar."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from chatmeter.assistants import service as assistants
from chatmeter.panel.assistant_views import file_counts, status_of
from chatmeter.panel.deps import ScriptViewerDep, ViewerDep, ctx_of, refused_as_json
from chatmeter.panel.figures import dashboard_figures
from chatmeter.panel.pages.verification import DONE
from chatmeter.panel.rendering import render

router = APIRouter(prefix="/panel", include_in_schema=False)


@router.get("/dashboard")
def dashboard(request: Request, viewer: ViewerDep) -> Response:
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        bots = assistants.list_assistants(session, account_id=viewer.account_id)
        files = file_counts(session, account_id=viewer.account_id)
    # Each row carries its status both ways, so that buying tokens on this page (or
    # running out) switches it without a reload.
    rows = [
        {
            "id": bot.id,
            "name": bot.name,
            "title": bot.widget_title,
            "on": status_of(active=True, counts=files.get(bot.id, {})),
            "off": status_of(active=False, counts=files.get(bot.id, {})),
        }
        for bot in bots
    ]
    return render(
        request,
        "dashboard.html",
        viewer=viewer,
        active_nav="dashboard",
        bots=rows,
        notice=DONE.get(request.query_params.get("done", "")),
    )


@router.get("/figures", dependencies=[refused_as_json])
def figures(request: Request, viewer: ScriptViewerDep) -> Response:
    """The balance as JSON, for the pages to refresh themselves."""
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        return JSONResponse(
            dashboard_figures(
                session,
                settings=ctx.settings,
                account_id=viewer.account_id,
                timezone=viewer.timezone,
                now=ctx.clock.now(),
            ),
            headers={"Cache-Control": "no-store"},
        )
