"""The assistants pages: the list, a new assistant, its settings, embed snippet and deletion.

Training files are ``pages.training``, the test chat and conversations
``pages.conversations``. Every form carries the CSRF token and changes nothing
unless every value is valid.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from chatmeter.accounts import service as accounts
from chatmeter.answers import modes
from chatmeter.assistants import estimate as launch
from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.assistants.schemas import limits
from chatmeter.panel.assistant_forms import (
    CREATE_FIELDS,
    SETTINGS_FIELDS,
    TEXT_FIELDS,
    TEXT_LABELS,
    field_errors,
    form_of,
    parse_form,
    sent_text,
)
from chatmeter.panel.assistant_views import (
    BotDep,
    assistant_page,
    bot_of,
    conversation_figures,
    file_counts,
    preview_of,
    status_of,
)
from chatmeter.panel.deps import CheckedFormDep, Refusal, Viewer, ViewerDep, ctx_of, refused_by
from chatmeter.panel.figures import dashboard_figures
from chatmeter.panel.rendering import CONTENT_SECURITY_POLICY, render, templates
from chatmeter.widget import texts as widget_texts
from chatmeter.widget.origins import DEFAULT_PORTS

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
def assistant_list(request: Request, viewer: ViewerDep) -> Response:
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
            _list_row(a, files.get(a.id, {}), talks.get(a.id, (0, 0)), figures)
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
    assistant: Assistant, counts: dict[str, int], talks: tuple[int, int], figures: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": assistant.id,
        "name": assistant.name,
        "title": assistant.widget_title or assistant.name,
        "color": assistant.widget_color,
        "status": status_of(
            active=figures["active"], counts=counts, had_tokens=figures["had_tokens"]
        ),
        "ready": counts.get("ready", 0),
        "files": sum(counts.values()),
        "conversations": talks[0],
        "tokens": talks[1],
    }


# --- a new assistant ----------------------------------------------------------------


@router.get("/assistants/new")
def new_form(request: Request, viewer: ViewerDep) -> Response:
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


def _new_refused(request: Request, refused: Refusal) -> Response:
    """The form again as it was sent, each bad field marked."""
    assert refused.viewer is not None
    return _new_page(
        request,
        refused.viewer,
        form=form_of(None) | sent_text(refused.form, CREATE_FIELDS),
        status=refused.status,
        error=refused.message,
        errors=field_errors(refused.error),
    )


@router.post("/assistants/new", dependencies=[refused_by(_new_refused)])
def create(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
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
    return RedirectResponse(f"/panel/assistants/{assistant_id}/training?done=created", 303)


# --- settings ------------------------------------------------------------------------


@router.get("/assistants/{assistant_id}")
def settings_page(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
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
        contact_email = accounts.get_account(session, account_id=viewer.account_id).contact_email
    return assistant_page(
        request,
        viewer,
        "assistant_settings.html",
        bot=bot,
        tab="settings",
        form=form,
        limits=limits(),
        models=ctx_of(request).models.choices,
        answer_modes=[(str(mode), label) for mode, label in modes.MODE_LABELS.items()],
        default_fallback=modes.fallback_text("", contact_email),
        text_labels=TEXT_LABELS,
        default_texts=widget_texts.ENGLISH,
        preview=preview_of(form, widget_texts.ENGLISH),
        status=status,
        **context,
    )


def _settings_refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    errors = field_errors(refused.error)
    return _settings_page(
        request,
        refused.viewer,
        bot_of(request),
        sent=sent_text(refused.form, SETTINGS_FIELDS + TEXT_FIELDS),
        status=refused.status,
        # Bad fields are listed in the page's error summary; other refusals in the alert.
        error=None if errors else refused.message,
        errors=errors,
    )


@router.post("/assistants/{assistant_id}", dependencies=[refused_by(_settings_refused)])
def save_settings(
    request: Request, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep
) -> Response:
    ctx = ctx_of(request)
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
    return RedirectResponse(f"/panel/assistants/{bot['id']}?done=saved", status_code=303)


# --- deleting ------------------------------------------------------------------------


def confirmation_refused(template: str, tab: str) -> Any:
    """A confirmation page's dependency: its refusal shows the page again, with the message."""

    def page(request: Request, refused: Refusal) -> Response:
        assert refused.viewer is not None
        return assistant_page(
            request,
            refused.viewer,
            template,
            bot=bot_of(request),
            tab=tab,
            status=refused.status,
            error=refused.message,
        )

    return refused_by(page)


@router.get("/assistants/{assistant_id}/delete")
def delete_form(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    return assistant_page(request, viewer, "assistant_delete.html", bot=bot, tab="settings")


@router.post(
    "/assistants/{assistant_id}/delete",
    dependencies=[confirmation_refused("assistant_delete.html", "settings")],
)
def delete(request: Request, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        assistants.delete_assistant(
            uow.session, account_id=viewer.account_id, assistant_id=bot["id"], now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse("/panel/assistants?done=deleted", status_code=303)


# --- the embed snippet -------------------------------------------------------------


def snippet(base_url: str, public_key: str) -> str:
    """The one tag a customer puts on their website (the template escapes it for display)."""
    src = f"{base_url.rstrip('/')}/widget.js"
    return f'<script src="{src}" data-assistant="{public_key}" async></script>'


def host_of(url: str) -> str:
    """The host and port a browser goes to for ``url``, as people write it: ``example.com``,
    ``127.0.0.1:8000`` (the scheme's default port left out)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    host = f"[{host}]" if ":" in host else host  # IPv6
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or DEFAULT_PORTS.get(parts.scheme.lower()) == port:
        return host
    return f"{host}:{port}"


def snippet_elsewhere(request: Request) -> str | None:
    """The snippet's host when it is not the one this page is served from, else None.

    The snippet names ``CHATMETER_BASE_URL``; the page's own address is the one the
    app answers on (``request.base_url``, as the widget's origin check reads it). Only
    hosts are compared: behind a proxy that ends TLS the scheme differs harmlessly.
    """
    wanted = host_of(ctx_of(request).settings.base_url)
    return wanted if wanted != host_of(str(request.base_url)) else None


@router.get("/assistants/{assistant_id}/embed")
def embed_page(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    code = snippet(ctx_of(request).settings.base_url, bot["public_key"])
    typed = request.query_params.get("conversations_per_day", "")[:20]
    estimate, estimate_error = _launch_estimate(request, viewer, bot, typed)
    return assistant_page(
        request,
        viewer,
        "assistant_embed.html",
        bot=bot,
        tab="embed",
        snippet=code,
        snippet_host=snippet_elsewhere(request),
        panel_host=host_of(str(request.base_url)),
        notice=_notice(request),
        estimate=estimate,
        estimate_error=estimate_error,
        conversations_typed=typed,
        status=422 if estimate_error else 200,
    )


ESTIMATE_MESSAGE = (
    f"Enter the conversations you expect a day, a whole number from 1 to "
    f"{launch.MAX_CONVERSATIONS_PER_DAY:,}."
)


def _launch_estimate(
    request: Request, viewer: Viewer, bot: dict[str, Any], typed: str
) -> tuple[dict[str, Any] | None, str | None]:
    """What the assistant will cost a month at the conversations a day the customer typed."""
    if not typed:
        return None, None
    text = typed.strip().replace(",", "")
    if not text.isdigit() or not 1 <= int(text) <= launch.MAX_CONVERSATIONS_PER_DAY:
        return None, ESTIMATE_MESSAGE
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        assistant = assistants.get_assistant(
            session, account_id=viewer.account_id, assistant_id=bot["id"]
        )
        seen = launch.measured(session, assistant=assistant)
    result = launch.estimate(
        assistant=assistant,
        seen=seen,
        conversations_per_day=int(text),
        package_tokens=ctx.settings.package_tokens,
        history_tokens=ctx.settings.chat_history_tokens,
        rate=ctx.rate_card.rate_for(assistant.model or assistant.provider),
    )
    return result.as_dict(), None


@router.get("/assistants/{assistant_id}/embed/preview")
def embed_preview(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    """A blank page with nothing but the snippet: the widget as a visitor gets it.

    It is served from Chatmeter's own address, which the public endpoints accept as
    the page's origin whatever the allowed websites (``web.widget.PublicOrigins``).
    """
    base_url = ctx_of(request).settings.base_url
    response = templates.TemplateResponse(
        request,
        "embed_preview.html",
        {"bot": bot, "script_src": f"{base_url.rstrip('/')}/widget.js"},
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = preview_policy(_origin(base_url))
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def preview_policy(snippet_origin: str) -> str:
    """The panel's policy, with the snippet's host allowed to serve the script and answer
    it, so that the preview loads the widget exactly as a customer's page would."""
    return CONTENT_SECURITY_POLICY.replace(
        "script-src 'self'", f"script-src 'self' {snippet_origin}"
    ).replace("connect-src 'self'", f"connect-src 'self' {snippet_origin}")


@router.get("/assistants/{assistant_id}/rotate-key")
def rotate_form(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    return assistant_page(request, viewer, "assistant_rotate.html", bot=bot, tab="embed")


@router.post(
    "/assistants/{assistant_id}/rotate-key",
    dependencies=[confirmation_refused("assistant_rotate.html", "embed")],
)
def rotate(request: Request, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        assistants.rotate_public_key(
            uow.session, account_id=viewer.account_id, assistant_id=bot["id"], now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse(f"/panel/assistants/{bot['id']}/embed?done=rotated", 303)
