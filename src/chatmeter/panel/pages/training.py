"""An assistant's training files: the page, uploads, live status as JSON, removal.

The page's script uploads each file on its own request (so each shows its own
upload progress), sending the CSRF token in ``X-CSRF-Token``, and then polls
``files.json`` until every file is ready or failed. Without the script the
same endpoint takes the plain form with its ``csrf_token`` field and answers
with the page. The background worker does the training; a failure's message
is the one the extraction gave, meant for the customer.

An upload is read only once the session (and, for the script, its token) is
checked; the plain form's token is its first field, checked before a byte of
the files is read. The files are spooled to disk as they arrive.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from chatmeter.assistants import service as assistants
from chatmeter.errors import InvalidInput, NotFound, Unauthorized
from chatmeter.http.uploads import receive_upload
from chatmeter.knowledge.errors import SUPPORTED_FORMATS
from chatmeter.panel import auth
from chatmeter.panel.assistant_views import (
    BotDep,
    assistant_page,
    bot_of,
    file_row,
    owned_assistant,
    parse_id,
    size_text,
    training_summary,
    viewers_assistant,
)
from chatmeter.panel.deps import (
    SESSION_ENDED,
    CheckedFormDep,
    ErrorPage,
    NoSuchPage,
    Refusal,
    ScriptViewerDep,
    SignInRequired,
    Viewer,
    ViewerDep,
    ctx_of,
    json_refusal,
    maybe_viewer,
    refused_as_json,
    refused_by,
)
from chatmeter.panel.rendering import form_text
from chatmeter.training import service as training
from chatmeter.training.content import Content
from chatmeter.training.titles import shown_title

router = APIRouter(prefix="/panel", include_in_schema=False)

NO_SUCH_ASSISTANT = "there is no such assistant"
DONE = {
    "created": "Your assistant is created. Now upload the files it should answer from.",
    "uploaded": "Your files are uploaded. They are trained in the background.",
    "removed": "The file is removed. Answers no longer use it.",
    "titled": "The title is saved. Visitors see it among the sources of the next answers.",
}


def _rows(request: Request, viewer: Viewer, assistant_id: int) -> list[dict[str, Any]]:
    with ctx_of(request).db.read() as session:
        assistant = assistants.get_assistant(
            session, account_id=viewer.account_id, assistant_id=assistant_id
        )
        return [file_row(f) for f in training.list_files(session, assistant=assistant)]


def _training_page(
    request: Request, viewer: Viewer, bot: dict[str, Any], *, status: int = 200, **context: Any
) -> Response:
    rows = _rows(request, viewer, bot["id"])
    return assistant_page(
        request,
        viewer,
        "assistant_training.html",
        bot=bot,
        tab="training",
        files=rows,
        summary=training_summary(rows),
        formats=SUPPORTED_FORMATS,
        max_bytes=ctx_of(request).settings.max_upload_bytes,
        max_size=size_text(ctx_of(request).settings.max_upload_bytes),
        status=status,
        **context,
    )


def _training_refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    return _training_page(
        request, refused.viewer, bot_of(request), status=refused.status, error=refused.message
    )


@router.get("/assistants/{assistant_id}/training")
def training_page(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    notice = DONE.get(request.query_params.get("done", ""))
    return _training_page(request, viewer, bot, notice=notice)


@router.get("/assistants/{assistant_id}/files.json", dependencies=[refused_as_json])
def files_json(request: Request, assistant_id: str, viewer: ScriptViewerDep) -> Response:
    """Every file's status and progress, for the page to follow training as it happens."""
    with ctx_of(request).db.read() as session:
        assistant = owned_assistant(session, viewer, assistant_id)
        if assistant is None:
            raise NotFound(NO_SUCH_ASSISTANT)
        rows = [file_row(f) for f in training.list_files(session, assistant=assistant)]
    return JSONResponse(
        {"files": rows, "summary": training_summary(rows)}, headers={"Cache-Control": "no-store"}
    )


# --- uploading ------------------------------------------------------------------------


def _scripted(request: Request) -> bool:
    """The page's script sends the token in a header and reads JSON; a plain form does not."""
    return auth.CSRF_HEADER in request.headers


def _upload_refused(request: Request, refused: Refusal) -> Response:
    page: ErrorPage = json_refusal if _scripted(request) else _training_refused
    return page(request, refused)


@router.post("/assistants/{assistant_id}/files", dependencies=[refused_by(_upload_refused)])
async def upload(request: Request, assistant_id: str) -> Response:
    """One or several files; JSON for the page's script, the page again for a plain form.

    Nothing of the body is read before the session, the assistant and (for the script)
    the token are checked; the plain form's token is its first field, checked before a
    byte of the files is read (``before_files``).
    """
    scripted = _scripted(request)
    viewer, bot = await run_in_threadpool(_who, request, assistant_id, scripted)
    ctx = ctx_of(request)
    async with receive_upload(
        request,
        spool_dir=ctx.settings.data_dir / "uploads",
        max_file_bytes=ctx.settings.max_upload_bytes,
        before_files=None if scripted else lambda fields: _check_token(request, fields),
    ) as received:
        rows = await run_in_threadpool(_store, request, viewer, bot["id"], received.files)
    if not scripted:
        return RedirectResponse(f"/panel/assistants/{bot['id']}/training?done=uploaded", 303)
    status = 201 if any(not row["duplicate"] for row in rows) else 200
    return JSONResponse({"files": rows}, status_code=status)


def _who(request: Request, assistant_id: str, scripted: bool) -> tuple[Viewer, dict[str, Any]]:
    """The viewer and the assistant, checked from the headers alone."""
    viewer = maybe_viewer(request)
    if viewer is None:
        if scripted:
            raise Unauthorized(SESSION_ENDED)
        raise SignInRequired
    try:
        bot = viewers_assistant(request, assistant_id, viewer)
    except NoSuchPage:
        if scripted:
            raise NotFound(NO_SUCH_ASSISTANT) from None
        raise
    if scripted:
        _check_token(request, {auth.CSRF_FIELD: request.headers.get(auth.CSRF_HEADER)})
    return viewer, bot


def _check_token(request: Request, fields: dict[str, Any]) -> None:
    auth.check_csrf(request, ctx_of(request).settings, fields.get(auth.CSRF_FIELD))


def _store(
    request: Request, viewer: Viewer, assistant_id: int, contents: list[tuple[str, Content]]
) -> list[dict[str, Any]]:
    """Queue every file, or none of them if one is refused (empty, unnamed)."""
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=viewer.account_id, assistant_id=assistant_id
        )
        rows = []
        for filename, content in contents:
            done = training.upload(
                uow.session,
                assistant=assistant,
                filename=filename,
                data=content,
                max_bytes=ctx.settings.max_upload_bytes,
                now=ctx.clock.now(),
                quota=training.Quota.of(ctx.settings),
            )
            uow.session.flush()
            rows.append(file_row(done.file) | {"duplicate": done.duplicate})
        uow.commit()
    return rows


# --- removing ---------------------------------------------------------------------------


@router.post(
    "/assistants/{assistant_id}/files/{file_id}/delete",
    dependencies=[refused_by(_training_refused)],
)
def remove(
    request: Request, file_id: str, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep
) -> Response:
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=viewer.account_id, assistant_id=bot["id"]
        )
        training.delete_file(
            uow.session, assistant=assistant, file_id=parse_id(file_id) or 0, now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse(f"/panel/assistants/{bot['id']}/training?done=removed", 303)


# --- the title visitors see -------------------------------------------------------------


def _title_page(
    request: Request,
    viewer: Viewer,
    bot: dict[str, Any],
    file_id: str,
    *,
    status: int = 200,
    title: str | None = None,
    error: str | None = None,
) -> Response:
    with ctx_of(request).db.read() as session:
        assistant = assistants.get_assistant(
            session, account_id=viewer.account_id, assistant_id=bot["id"]
        )
        file = training.get_file(session, assistant=assistant, file_id=parse_id(file_id) or 0)
        shown = training.file_dict(file)
    return assistant_page(
        request,
        viewer,
        "assistant_file_title.html",
        bot=bot,
        tab="training",
        file=shown,
        default_title=shown_title("", file.detected_title, file.filename),
        title=shown["title"] if title is None else title,
        error=error,
        status=status,
    )


@router.get("/assistants/{assistant_id}/files/{file_id}/title")
def title_page(request: Request, file_id: str, viewer: ViewerDep, bot: BotDep) -> Response:
    """The title visitors see for this file among an answer's sources."""
    return _title_page(request, viewer, bot, file_id)


@router.post(
    "/assistants/{assistant_id}/files/{file_id}/title",
    dependencies=[refused_by(_training_refused)],
)
def set_title(
    request: Request, file_id: str, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep
) -> Response:
    ctx = ctx_of(request)
    title = ""
    try:
        title = form_text(form, "title")
        with ctx.db.uow() as uow:
            assistant = assistants.get_assistant(
                uow.session, account_id=viewer.account_id, assistant_id=bot["id"]
            )
            training.set_title(
                uow.session,
                assistant=assistant,
                file_id=parse_id(file_id) or 0,
                title=title,
                now=ctx.clock.now(),
            )
            uow.commit()
    except InvalidInput as refused:
        return _title_page(
            request, viewer, bot, file_id, status=422, title=title, error=refused.message
        )
    return RedirectResponse(f"/panel/assistants/{bot['id']}/training?done=titled", 303)
