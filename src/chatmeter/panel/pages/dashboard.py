"""The dashboard: the welcome checklist, the balance against the limit, the renewal date,
the assistants' status; and the same figures as JSON, for every page to refresh its
sidebar."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts import service as accounts
from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.billing import topups
from chatmeter.chat import surges
from chatmeter.chat.models import Conversation
from chatmeter.panel.assistant_views import TEST_VISITOR, file_counts, status_of
from chatmeter.panel.deps import (
    CheckedFormDep,
    Refusal,
    ScriptViewerDep,
    Viewer,
    ViewerDep,
    ctx_of,
    refused_as_json,
    refused_by,
)
from chatmeter.panel.figures import dashboard_figures, had_tokens
from chatmeter.panel.onboarding import AccountProgress, checklist
from chatmeter.panel.pages.verification import DONE
from chatmeter.panel.rendering import render
from chatmeter.training.models import FileStatus, TrainingFile

router = APIRouter(prefix="/panel", include_in_schema=False)


def account_progress(
    session: Session, *, account_id: int, bots: list[Assistant]
) -> AccountProgress:
    """What the welcome checklist ticks, read from the account's assistants (``bots``,
    its own) and ledger."""
    ids = [bot.id for bot in bots]
    trained = set(
        session.scalars(
            select(TrainingFile.assistant_id)
            .where(
                TrainingFile.account_id == account_id,
                TrainingFile.assistant_id.in_(ids),
                TrainingFile.status == FileStatus.READY,
            )
            .distinct()
        )
    )
    tested = session.scalar(
        select(Conversation.id)
        .where(
            Conversation.account_id == account_id,
            Conversation.assistant_id.in_(ids),
            Conversation.visitor == TEST_VISITOR,
        )
        .limit(1)
    )
    # The steps lead to the first assistant that has files, else to the first one.
    focus = next((bot for bot in bots if bot.id in trained), bots[0] if bots else None)
    account = accounts.get_account(session, account_id=account_id)
    return AccountProgress(
        assistant_id=focus.id if focus is not None else None,
        file_ready=bool(trained),
        tested=tested is not None,
        website_allowed=any(bot.domains for bot in bots),
        had_tokens=had_tokens(session, account_id=account_id),
        dismissed=account.onboarding_dismissed_at is not None,
    )


def _dashboard_page(
    request: Request, viewer: Viewer, *, status: int = 200, **context: Any
) -> Response:
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        bots = assistants.list_assistants(session, account_id=viewer.account_id)
        files = file_counts(session, account_id=viewer.account_id)
        progress = account_progress(session, account_id=viewer.account_id, bots=bots)
        auto_topup = topups.overview(  # _auto_topup_line.html
            session, settings=ctx.settings, account_id=viewer.account_id, now=ctx.clock.now()
        )
        surging = surges.find(  # _surges.html: the same surges the emails tell
            session,
            account=accounts.get_account(session, account_id=viewer.account_id),
            now=ctx.clock.now(),
        )
    # Each row carries its status both ways, so that buying tokens on this page (or
    # running out) switches it without a reload.
    rows = [
        {
            "id": bot.id,
            "name": bot.name,
            "title": bot.widget_title,
            "on": status_of(active=True, counts=files.get(bot.id, {})),
            "off": status_of(
                active=False, counts=files.get(bot.id, {}), had_tokens=progress.had_tokens
            ),
        }
        for bot in bots
    ]
    return render(
        request,
        "dashboard.html",
        viewer=viewer,
        active_nav="dashboard",
        bots=rows,
        checklist=checklist(progress),
        auto_topup=auto_topup,
        surges=surging,
        status=status,
        **context,
    )


@router.get("/dashboard")
def dashboard(request: Request, viewer: ViewerDep) -> Response:
    return _dashboard_page(request, viewer, notice=DONE.get(request.query_params.get("done", "")))


def _dismiss_refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    return _dashboard_page(request, refused.viewer, status=refused.status, error=refused.message)


@router.post("/onboarding/dismiss", dependencies=[refused_by(_dismiss_refused)])
def dismiss_onboarding(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    """Hide the welcome checklist for the whole account. Any member may: it is guidance,
    not a setting, and whoever knows the way around has no more use for it."""
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        accounts.dismiss_onboarding(uow.session, account_id=viewer.account_id, now=ctx.clock.now())
        uow.commit()
    return RedirectResponse("/panel/dashboard", status_code=303)


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
