"""Assistants and their training files."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, StrictStr
from starlette.concurrency import run_in_threadpool

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from chatmeter.http.uploads import receive_upload
from chatmeter.training import service as training
from chatmeter.training.content import Content
from chatmeter.training.titles import MAX_TITLE
from chatmeter.web.deps import AccountDep, ContextDep, IdPath
from chatmeter.web.schemas import Strict

router = APIRouter(tags=["assistants"])
# The body is read by the route itself, after the API key is checked, so FastAPI
# cannot describe it from a parameter: this is what it would have said.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more training files.",
                        }
                    },
                }
            }
        },
    }
}


@router.get("/assistants")
def list_assistants(ctx: ContextDep, account_id: AccountDep) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        return [
            assistants.assistant_dict(a)
            for a in assistants.list_assistants(session, account_id=account_id)
        ]


@router.post("/assistants", status_code=201)
def create_assistant(
    body: AssistantFields, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    with ctx.db.uow() as uow:
        assistant = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=body,
            now=ctx.clock.now(),
            catalog=ctx.models,
        )
        uow.commit()
        return assistants.assistant_dict(assistant)


@router.get("/assistants/{assistant_id}")
def get_assistant(assistant_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.read() as session:
        return assistants.assistant_dict(
            assistants.get_assistant(session, account_id=account_id, assistant_id=assistant_id)
        )


@router.patch("/assistants/{assistant_id}")
def update_assistant(
    assistant_id: IdPath, body: AssistantFields, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    with ctx.db.uow() as uow:
        assistant = assistants.update_assistant(
            uow.session,
            account_id=account_id,
            assistant_id=assistant_id,
            fields=body,
            now=ctx.clock.now(),
            catalog=ctx.models,
        )
        uow.commit()
        return assistants.assistant_dict(assistant)


@router.delete("/assistants/{assistant_id}", status_code=204)
def delete_assistant(assistant_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> Response:
    with ctx.db.uow() as uow:
        assistants.delete_assistant(
            uow.session, account_id=account_id, assistant_id=assistant_id, now=ctx.clock.now()
        )
        uow.commit()
    return Response(status_code=204)


@router.post("/assistants/{assistant_id}/public-key")
def rotate_public_key(
    assistant_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """Issue a new embed key; the old one stops working at once."""
    with ctx.db.uow() as uow:
        assistant = assistants.rotate_public_key(
            uow.session, account_id=account_id, assistant_id=assistant_id, now=ctx.clock.now()
        )
        uow.commit()
        return assistants.assistant_dict(assistant)


@router.post("/assistants/{assistant_id}/files", status_code=201, openapi_extra=UPLOAD_BODY)
async def upload_files(
    assistant_id: IdPath, request: Request, ctx: ContextDep, account_id: AccountDep
) -> JSONResponse:
    """Queue files for training; each answer says whether the content was already known.

    The key and the assistant are checked before a byte of the body is read;
    the files are then spooled to disk as they arrive, each refused the moment
    it passes ``CHATMETER_MAX_UPLOAD_BYTES``.
    """
    await run_in_threadpool(_own_assistant, ctx, account_id, assistant_id)
    async with receive_upload(
        request,
        spool_dir=ctx.settings.data_dir / "uploads",
        max_file_bytes=ctx.settings.max_upload_bytes,
    ) as received:
        results = await run_in_threadpool(_queue, ctx, account_id, assistant_id, received.files)
    status = 201 if any(not r.duplicate for r in results) else 200
    body = [training.file_dict(r.file) | {"duplicate": r.duplicate} for r in results]
    return JSONResponse(jsonable(body), status_code=status)


def _own_assistant(ctx: Context, account_id: int, assistant_id: int) -> None:
    with ctx.db.read() as session:
        assistants.get_assistant(session, account_id=account_id, assistant_id=assistant_id)


def _queue(
    ctx: Context, account_id: int, assistant_id: int, files: list[tuple[str, Content]]
) -> list[training.Upload]:
    """Every file queued, or none of them if one is refused."""
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=account_id, assistant_id=assistant_id
        )
        results = []
        for name, content in files:
            results.append(
                training.upload(
                    uow.session,
                    assistant=assistant,
                    filename=name,
                    data=content,
                    max_bytes=ctx.settings.max_upload_bytes,
                    now=ctx.clock.now(),
                    quota=training.Quota.of(ctx.settings),
                )
            )
            uow.session.flush()
        uow.commit()
    return results


@router.get("/assistants/{assistant_id}/files")
def list_files(
    assistant_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        assistant = assistants.get_assistant(
            session, account_id=account_id, assistant_id=assistant_id
        )
        return [training.file_dict(f) for f in training.list_files(session, assistant=assistant)]


@router.get("/assistants/{assistant_id}/files/{file_id}")
def get_file(
    assistant_id: IdPath, file_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """A file's status (queued, processing, ready, failed), progress, pages, chunks and tokens."""
    with ctx.db.read() as session:
        assistant = assistants.get_assistant(
            session, account_id=account_id, assistant_id=assistant_id
        )
        return training.file_dict(training.get_file(session, assistant=assistant, file_id=file_id))


class FileTitleIn(Strict):
    title: Annotated[StrictStr, Field(max_length=MAX_TITLE)]


@router.patch("/assistants/{assistant_id}/files/{file_id}")
def rename_file(
    assistant_id: IdPath,
    file_id: IdPath,
    body: FileTitleIn,
    ctx: ContextDep,
    account_id: AccountDep,
) -> dict[str, Any]:
    """Set the title visitors see for this file among an answer's sources (``source_title``);
    "" gives back the document's own title."""
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=account_id, assistant_id=assistant_id
        )
        file = training.set_title(
            uow.session,
            assistant=assistant,
            file_id=file_id,
            title=body.title,
            now=ctx.clock.now(),
        )
        uow.commit()
        return training.file_dict(file)


@router.delete("/assistants/{assistant_id}/files/{file_id}", status_code=204)
def delete_file(
    assistant_id: IdPath, file_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> Response:
    """Delete a file; its passages leave later answers at once."""
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=account_id, assistant_id=assistant_id
        )
        training.delete_file(uow.session, assistant=assistant, file_id=file_id, now=ctx.clock.now())
        uow.commit()
    return Response(status_code=204)


def jsonable(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)
