"""Assistants and their training files."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Response, UploadFile
from fastapi.responses import JSONResponse

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.errors import InvalidInput, PayloadTooLarge
from chatmeter.training import service as training
from chatmeter.web.deps import AccountDep, ContextDep, IdPath

router = APIRouter(tags=["assistants"])
MAX_FILES_PER_UPLOAD = 20


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


@router.post("/assistants/{assistant_id}/files", status_code=201)
async def upload_files(
    assistant_id: IdPath,
    ctx: ContextDep,
    account_id: AccountDep,
    files: Annotated[list[UploadFile], File(description="One or more training files.")],
) -> JSONResponse:
    """Queue files for training; each answer says whether the content was already known."""
    if not files or len(files) > MAX_FILES_PER_UPLOAD:
        raise InvalidInput(f"send 1 to {MAX_FILES_PER_UPLOAD} files", field="files")
    limit = ctx.settings.max_upload_bytes
    contents = []
    for upload in files:
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(
                f"{upload.filename} is larger than {limit:,} bytes", filename=upload.filename
            )
        contents.append((upload.filename or "", data))
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(
            uow.session, account_id=account_id, assistant_id=assistant_id
        )
        results = [
            training.upload(
                uow.session,
                assistant=assistant,
                filename=name,
                data=data,
                max_bytes=limit,
                now=ctx.clock.now(),
            )
            for name, data in contents
        ]
        uow.commit()
        body = [training.file_dict(r.file) | {"duplicate": r.duplicate} for r in results]
    ctx.wake_worker()
    status = 201 if any(not r.duplicate for r in results) else 200
    return JSONResponse(jsonable(body), status_code=status)


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
