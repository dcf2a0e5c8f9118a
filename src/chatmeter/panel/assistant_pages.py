"""The assistants pages: the list, a new assistant, its settings, embed snippet and deletion.

Training files live in ``assistant_files``, the test chat and conversations in
``assistant_chat``; their routes join this router, so ``routes.install`` needs
to know only this one. Every form carries the CSRF token and changes nothing
unless every value is valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.errors import ChatmeterError
from chatmeter.panel import assistant_chat, assistant_files, auth
from chatmeter.panel.assistant_forms import (
    CREATE_FIELDS,
    SETTINGS_FIELDS,
    field_errors,
    form_of,
    limits,
    parse_form,
    sent_text,
)
from chatmeter.panel.assistant_views import (
    assistant_page,
    conversation_figures,
    file_counts,
    find,
    status_of,
)
from chatmeter.panel.common import (
    Viewer,
    ctx_of,
    render,
    sentence,
    to_sign_in,
    viewer_of,
    with_form,
)
from chatmeter.panel.views import dashboard_figures

router = APIRouter(prefix="/panel", include_in_schema=False)

DONE = {
    "saved": "Your changes are saved.",
    "deleted": "The assistant is deleted. Its conversations stay in your usage figures.",
    "rotated": "A new public key is issued. Replace the snippet on your website with this one.",
}


def _notice(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


# --- the list -------------------------------------------------------------------


@router.get("/assistants")
def assistant_list(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        figures = dashboard_figures(
            session,
            settings=ctx.settings,
            account_id=viewer.account_id,
            timezone=viewer.timezone,
            now=ctx.clock.now(),
        )
        files = file_counts(session, account_id=viewer.account_id)
        talks = conversation_figures(session, account_id=viewer.account_id)
        rows = [
            _list_row(a, files.get(a.id, {}), talks.get(a.id, (0, 0)), figures["active"])
            for a in assistants.list_assistants(session, account_id=viewer.account_id)
        ]
    return render(
        request,
        "assistants.html",
        viewer=viewer,
        active_nav="assistants",
        figures=figures,
        rows=rows,
        notice=_notice(request),
    )


def _list_row(
    assistant: Assistant, counts: dict[str, int], talks: tuple[int, int], active: bool
) -> dict[str, Any]:
    return {
        "id": assistant.id,
        "name": assistant.name,
        "title": assistant.widget_title or assistant.name,
        "color": assistant.widget_color,
        "status": status_of(active=active, counts=counts),
        "ready": counts.get("ready", 0),
        "files": sum(counts.values()),
        "conversations": talks[0],
        "tokens": talks[1],
    }


# --- a new assistant ----------------------------------------------------------------


@router.get("/assistants/new")
def new_form(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    return _new_page(request, viewer, form=form_of(None))


def _new_page(
    request: Request, viewer: Viewer, *, form: dict[str, str], status: int = 200, **context: Any
) -> Response:
    return render(
        request,
        "assistant_new.html",
        viewer=viewer,
        active_nav="assistants",
        form=form,
        limits=limits(),
        status=status,
        **context,
    )


@router.post("/assistants/new")
async def create(request: Request) -> Response:
    return await with_form(request, _create)


def _create(request: Request, form: Any) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        fields = parse_form(form, CREATE_FIELDS)
        with ctx.db.uow() as uow:
            assistant = assistants.create_assistant(
                uow.session,
                account_id=viewer.account_id,
                fields=fields,
                now=ctx.clock.now(),
                catalog=ctx.models,
            )
            uow.commit()
            assistant_id = assistant.id
    except ChatmeterError as exc:  # the form again as it was sent, each bad field marked
        return _new_page(
            request,
            viewer,
            form=form_of(None) | sent_text(form, CREATE_FIELDS),
            status=exc.status_code,
            error=sentence(exc.message),
            errors=field_errors(exc),
        )
    return RedirectResponse(f"/panel/assistants/{assistant_id}/training?done=created", 303)


# --- settings ------------------------------------------------------------------------


@router.get("/assistants/{assistant_id}")
def settings_page(request: Request, assistant_id: str) -> Response:
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    return _settings_page(request, viewer, bot, notice=_notice(request))


def _settings_page(
    request: Request,
    viewer: Viewer,
    bot: dict[str, Any],
    *,
    sent: dict[str, str] | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        assistant = assistants.get_assistant(
            session, account_id=viewer.account_id, assistant_id=bot["id"]
        )
        form = form_of(assistant) | (sent or {})
    return assistant_page(
        request,
        viewer,
        "assistant_settings.html",
        bot=bot,
        tab="settings",
        form=form,
        limits=limits(),
        models=ctx_of(request).models.choices,
        status=status,
        **context,
    )


@router.post("/assistants/{assistant_id}")
async def save_settings(request: Request, assistant_id: str) -> Response:
    return await with_form(request, _save_settings, assistant_id)


def _save_settings(request: Request, form: Any, assistant_id: str) -> Response:
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        fields = parse_form(form, SETTINGS_FIELDS)
        with ctx.db.uow() as uow:
            assistants.update_assistant(
                uow.session,
                account_id=viewer.account_id,
                assistant_id=bot["id"],
                fields=fields,
                now=ctx.clock.now(),
                catalog=ctx.models,
            )
            uow.commit()
    except ChatmeterError as exc:
        return _settings_page(
            request,
            viewer,
            bot,
            sent=sent_text(form, SETTINGS_FIELDS),
            status=exc.status_code,
            error=sentence(exc.message),
            errors=field_errors(exc),
        )
    return RedirectResponse(f"/panel/assistants/{bot['id']}?done=saved", status_code=303)


# --- deleting ------------------------------------------------------------------------


@router.get("/assistants/{assistant_id}/delete")
def delete_form(request: Request, assistant_id: str) -> Response:
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    return assistant_page(request, viewer, "assistant_delete.html", bot=bot, tab="settings")


@router.post("/assistants/{assistant_id}/delete")
async def delete(request: Request, assistant_id: str) -> Response:
    return await with_form(request, _delete, assistant_id)


def _delete(request: Request, form: Any, assistant_id: str) -> Response:
    return _confirmed(
        request,
        assistant_id,
        form,
        verb=assistants.delete_assistant,
        page=("assistant_delete.html", "settings"),
        done=lambda _: "/panel/assistants?done=deleted",
    )


def _confirmed(
    request: Request,
    assistant_id: str,
    form: Any,
    *,
    verb: Callable[..., object],
    page: tuple[str, str],
    done: Callable[[int], str],
) -> Response:
    """A confirmation page's POST: run ``verb`` on the assistant, then go to ``done(id)``;
    on an error, the confirmation page (``page``: template and tab) again, with the message."""
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        with ctx.db.uow() as uow:
            verb(
                uow.session,
                account_id=viewer.account_id,
                assistant_id=bot["id"],
                now=ctx.clock.now(),
            )
            uow.commit()
    except ChatmeterError as exc:
        template, tab = page
        return assistant_page(
            request,
            viewer,
            template,
            bot=bot,
            tab=tab,
            status=exc.status_code,
            error=sentence(exc.message),
        )
    return RedirectResponse(done(bot["id"]), status_code=303)


# --- the embed snippet -------------------------------------------------------------


def snippet(base_url: str, public_key: str) -> str:
    """The one tag a customer puts on their website (the template escapes it for display)."""
    src = f"{base_url.rstrip('/')}/widget.js"
    return f'<script src="{src}" data-assistant="{public_key}" async></script>'


@router.get("/assistants/{assistant_id}/embed")
def embed_page(request: Request, assistant_id: str) -> Response:
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    return _embed_page(request, viewer, bot, notice=_notice(request))


def _embed_page(
    request: Request, viewer: Viewer, bot: dict[str, Any], *, status: int = 200, **context: Any
) -> Response:
    code = snippet(ctx_of(request).settings.base_url, bot["public_key"])
    return assistant_page(
        request,
        viewer,
        "assistant_embed.html",
        bot=bot,
        tab="embed",
        snippet=code,
        status=status,
        **context,
    )


@router.get("/assistants/{assistant_id}/rotate-key")
def rotate_form(request: Request, assistant_id: str) -> Response:
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    return assistant_page(request, viewer, "assistant_rotate.html", bot=bot, tab="embed")


@router.post("/assistants/{assistant_id}/rotate-key")
async def rotate(request: Request, assistant_id: str) -> Response:
    return await with_form(request, _rotate, assistant_id)


def _rotate(request: Request, form: Any, assistant_id: str) -> Response:
    return _confirmed(
        request,
        assistant_id,
        form,
        verb=assistants.rotate_public_key,
        page=("assistant_rotate.html", "embed"),
        done=lambda bot_id: f"/panel/assistants/{bot_id}/embed?done=rotated",
    )


# The training and chat pages join this router (their paths never collide with these).
router.include_router(assistant_files.router)
router.include_router(assistant_chat.router)
