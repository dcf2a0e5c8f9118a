"""Settings → API keys: the owner lists the account's keys, makes one (shown once) and
revokes them. The rules are ``accounts.keys``, the same as in the REST API and the CLI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import keys
from chatmeter.db import MAX_INT_ID
from chatmeter.errors import Forbidden, InvalidInput, NotFound
from chatmeter.formatting import local_date
from chatmeter.panel.auth import CsrfRefused
from chatmeter.panel.deps import (
    CheckedFormDep,
    Refusal,
    Viewer,
    ViewerDep,
    ctx_of,
    limiter_of,
    refused_by,
)
from chatmeter.panel.rendering import form_text, owner_only, render

router = APIRouter(prefix="/panel", include_in_schema=False)

PAGE = "/panel/settings/api-keys"
MANAGE = "manage API keys"
DONE = {"revoked": "The key is revoked; it no longer works."}


def keys_page(
    request: Request,
    viewer: Viewer,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
) -> HTMLResponse:
    ctx = ctx_of(request)
    rows: list[dict[str, Any]] = []
    if viewer.is_owner:
        with ctx.db.read() as session:
            rows = [keys.key_dict(k) for k in keys.list_keys(session, account_id=viewer.account_id)]
    zone = viewer.timezone
    for row in rows:
        row["created"] = local_date(row["created_at"], zone)
        row["last_used"] = local_date(row["last_used_at"], zone) if row["last_used_at"] else None
        row["revoked"] = local_date(row["revoked_at"], zone) if row["revoked_at"] else None
    return render(
        request,
        "settings_api_keys.html",
        viewer=viewer,
        active_nav="settings",
        status=status,
        error=error,
        notice=DONE.get(request.query_params.get("done", "")),
        keys=rows,
        values=values or {},
        created=created,
    )


def _refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    values: dict[str, str] = {}
    # The new key's form as typed; not after a forged form or a member's.
    if "name" in refused.form and not isinstance(refused.error, (CsrfRefused, Forbidden)):
        try:
            values = {
                "name": form_text(refused.form, "name", limit=keys.MAX_NAME_LENGTH),
                "scope": form_text(refused.form, "scope", limit=16),
            }
        except InvalidInput:
            values = {}
    return keys_page(
        request, refused.viewer, status=refused.status, error=refused.message, values=values
    )


@router.get("/settings/api-keys")
def api_keys(request: Request, viewer: ViewerDep) -> Response:
    return keys_page(request, viewer)


@router.post("/settings/api-keys", dependencies=[refused_by(_refused)])
def create(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    name = form_text(form, "name", limit=keys.MAX_NAME_LENGTH)
    scope = form_text(form, "scope", limit=16)
    limiter_of(request).check_action("api-key", str(viewer.account_id))
    with ctx.db.uow() as uow:
        key, secret = keys.issue(
            uow.session, account_id=viewer.account_id, name=name, scope=scope, now=ctx.clock.now()
        )
        uow.commit()
    # Shown in this answer only (``render`` sends it with Cache-Control: no-store).
    return keys_page(request, viewer, created={"name": key.name, "key": secret})


@router.post("/settings/api-keys/{key_id}/revoke", dependencies=[refused_by(_refused)])
def revoke(request: Request, key_id: str, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    if not key_id.isdigit() or not 0 < int(key_id[:12]) <= MAX_INT_ID:
        raise NotFound("no such API key")
    with ctx.db.uow() as uow:
        keys.revoke(
            uow.session, account_id=viewer.account_id, key_id=int(key_id), now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse(f"{PAGE}?done=revoked", status_code=303)
