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
from chatmeter.errors import ChatmeterError, InvalidInput
from chatmeter.knowledge.errors import SUPPORTED_FORMATS
from chatmeter.panel import auth
from chatmeter.panel.assistant_views import (
    assistant_page,
    file_row,
    find,
    owned_assistant,
    parse_id,
    size_text,
    training_summary,
)
from chatmeter.panel.common import Viewer, ctx_of, problem, sentence, viewer_of, with_form
from chatmeter.training import service as training
from chatmeter.training.content import Content
from chatmeter.web.api.assistants import MAX_FILES_PER_UPLOAD
from chatmeter.web.uploads import receive_upload

router = APIRouter(include_in_schema=False)

DONE = {
    "created": "Your assistant is created. Now upload the files it should answer from.",
    "uploaded": "Your files are uploaded. They are trained in the background.",
    "removed": "The file is removed. Answers no longer use it.",
}
SESSION_ENDED = "your session has ended; sign in again"


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
        max_files=MAX_FILES_PER_UPLOAD,
        status=status,
        **context,
    )


@router.get("/assistants/{assistant_id}/training")
def training_page(request: Request, assistant_id: str) -> Response:
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    notice = DONE.get(request.query_params.get("done", ""))
    return _training_page(request, viewer, bot, notice=notice)


@router.get("/assistants/{assistant_id}/files.json")
def files_json(request: Request, assistant_id: str) -> Response:
    """Every file's status and progress, for the page to follow training as it happens."""
    viewer = viewer_of(request)
    if viewer is None:
        return problem(401, SESSION_ENDED)
    with ctx_of(request).db.read() as session:
        assistant = owned_assistant(session, viewer, assistant_id)
        if assistant is None:
            return problem(404, "there is no such assistant")
        rows = [file_row(f) for f in training.list_files(session, assistant=assistant)]
    return JSONResponse(
        {"files": rows, "summary": training_summary(rows)}, headers={"Cache-Control": "no-store"}
    )


# --- uploading ------------------------------------------------------------------------


@router.post("/assistants/{assistant_id}/files")
async def upload(request: Request, assistant_id: str) -> Response:
    """One or several files; JSON for the page's script, the page again for a plain form."""
    scripted = auth.CSRF_HEADER in request.headers
    found = await run_in_threadpool(_who, request, assistant_id, scripted)
    if isinstance(found, Response):
        return found  # nothing of the body has been read
    viewer, bot = found
    ctx = ctx_of(request)
    try:
        async with receive_upload(
            request,
            spool_dir=ctx.settings.data_dir / "uploads",
            max_file_bytes=ctx.settings.max_upload_bytes,
            max_files=MAX_FILES_PER_UPLOAD,
            before_files=None if scripted else lambda fields: _check_token(request, fields),
        ) as received:
            if not received.files:
                raise InvalidInput("choose one or more files to upload", field="files")
            rows = await run_in_threadpool(_store, request, viewer, bot["id"], received.files)
    except ChatmeterError as exc:
        if scripted:
            return problem(exc.status_code, exc.message)
        return await run_in_threadpool(
            _training_page,
            request,
            viewer,
            bot,
            status=exc.status_code,
            error=sentence(exc.message),
        )
    ctx.wake_worker()
    if not scripted:
        return RedirectResponse(f"/panel/assistants/{bot['id']}/training?done=uploaded", 303)
    status = 201 if any(not row["duplicate"] for row in rows) else 200
    return JSONResponse({"files": rows}, status_code=status)


def _who(
    request: Request, assistant_id: str, scripted: bool
) -> tuple[Viewer, dict[str, Any]] | Response:
    """The viewer and the assistant, checked from the headers alone; or the refusal."""
    if scripted and viewer_of(request) is None:
        return problem(401, SESSION_ENDED)
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return problem(404, "there is no such assistant") if scripted else found
    viewer, bot = found
    if scripted:
        try:
            _check_token(request, {auth.CSRF_FIELD: request.headers.get(auth.CSRF_HEADER)})
        except ChatmeterError as exc:
            return problem(exc.status_code, exc.message)
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


@router.post("/assistants/{assistant_id}/files/{file_id}/delete")
async def remove(request: Request, assistant_id: str, file_id: str) -> Response:
    return await with_form(request, _remove, assistant_id, file_id)


def _remove(request: Request, form: Any, assistant_id: str, file_id: str) -> Response:
    found = find(request, assistant_id)
    if isinstance(found, Response):
        return found
    viewer, bot = found
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        with ctx.db.uow() as uow:
            assistant = assistants.get_assistant(
                uow.session, account_id=viewer.account_id, assistant_id=bot["id"]
            )
            training.delete_file(
                uow.session,
                assistant=assistant,
                file_id=parse_id(file_id) or 0,
                now=ctx.clock.now(),
            )
            uow.commit()
    except ChatmeterError as exc:
        return _training_page(
            request, viewer, bot, status=exc.status_code, error=sentence(exc.message)
        )
    return RedirectResponse(f"/panel/assistants/{bot['id']}/training?done=removed", 303)
