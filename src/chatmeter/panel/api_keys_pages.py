"""Settings → API keys: the owner lists the account's keys, makes one (shown once) and
revokes them. The rules are ``accounts.keys``, the same as in the REST API and the CLI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import keys
from chatmeter.db import MAX_INT_ID
from chatmeter.errors import ChatmeterError, NotFound
from chatmeter.panel import auth
from chatmeter.panel.common import (
    Viewer,
    ctx_of,
    form_text,
    owner_only,
    render,
    sentence,
    to_sign_in,
    viewer_of,
    with_form,
)
from chatmeter.panel.password import limiter_of
from chatmeter.panel.views import local_date

router = APIRouter(include_in_schema=False)

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


@router.get("/settings/api-keys")
def api_keys(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    return keys_page(request, viewer)


@router.post("/settings/api-keys")
async def create(request: Request) -> Response:
    return await with_form(request, _create)


def _create(request: Request, form: Any) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    values: dict[str, str] = {}
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        owner_only(viewer, MANAGE)
        values = {
            "name": form_text(form, "name", limit=keys.MAX_NAME_LENGTH),
            "scope": form_text(form, "scope", limit=16),
        }
        limiter_of(request).check_action("api-key", str(viewer.account_id))
        with ctx.db.uow() as uow:
            key, secret = keys.issue(
                uow.session,
                account_id=viewer.account_id,
                name=values["name"],
                scope=values["scope"],
                now=ctx.clock.now(),
            )
            uow.commit()
    except ChatmeterError as exc:
        return keys_page(
            request, viewer, status=exc.status_code, error=sentence(exc.message), values=values
        )
    # Shown in this answer only (``render`` sends it with Cache-Control: no-store).
    return keys_page(request, viewer, created={"name": key.name, "key": secret})


@router.post("/settings/api-keys/{key_id}/revoke")
async def revoke(request: Request, key_id: str) -> Response:
    return await with_form(request, _revoke, key_id)


def _revoke(request: Request, form: Any, key_id: str) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        owner_only(viewer, MANAGE)
        if not key_id.isdigit() or not 0 < int(key_id[:12]) <= MAX_INT_ID:
            raise NotFound("no such API key")
        with ctx.db.uow() as uow:
            keys.revoke(
                uow.session, account_id=viewer.account_id, key_id=int(key_id), now=ctx.clock.now()
            )
            uow.commit()
    except ChatmeterError as exc:
        return keys_page(request, viewer, status=exc.status_code, error=sentence(exc.message))
    return RedirectResponse(f"{PAGE}?done=revoked", status_code=303)
