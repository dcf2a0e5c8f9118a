"""Settings → Webhooks: the owner registers endpoints for the account's events, sends a
test event, rotates the signing secret and reads each endpoint's delivery log.

The rules are ``chatmeter.webhooks.endpoints``, the same as in the REST API and the
CLI. A new secret is shown in the answer that made it only (``render`` sends pages
with Cache-Control: no-store).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from chatmeter.db import MAX_ID
from chatmeter.errors import Forbidden, InvalidInput, NotFound
from chatmeter.formatting import local_time
from chatmeter.panel.auth import CsrfRefused
from chatmeter.panel.deps import CheckedFormDep, Refusal, Viewer, ViewerDep, ctx_of, refused_by
from chatmeter.panel.rendering import form_text, owner_only, render
from chatmeter.webhooks import endpoints
from chatmeter.webhooks.events import ALL, DESCRIPTIONS, SUBSCRIBABLE

router = APIRouter(prefix="/panel", include_in_schema=False)

PAGE = "/panel/settings/webhooks"
MANAGE = "manage webhooks"
CATALOGUE = [{"type": t.value, "description": DESCRIPTIONS[t]} for t in SUBSCRIBABLE]
DONE = {
    "saved": "The endpoint is saved.",
    "deleted": "The endpoint is removed.",
    "test": "A test event is on its way; its delivery appears in the log below.",
    "resent": "The delivery is sent again; its new attempts appear in the log below.",
}
STATUS = {"pending": "Pending", "delivered": "Delivered", "dead": "Failed"}


def _endpoint_id(text: str) -> int:
    if not text.isdigit() or not 0 < int(text[:20]) <= MAX_ID:
        raise NotFound("no such webhook endpoint")
    return int(text)


def _typed(form: FormData) -> dict[str, Any]:
    """The endpoint's form as typed, to fill it again after a refusal."""
    try:
        return {
            "url": form_text(form, "url", limit=2048),
            "description": form_text(form, "description", limit=endpoints.MAX_DESCRIPTION),
            "events": [e for e in form.getlist("events") if isinstance(e, str)],
        }
    except InvalidInput:
        return {}


def _chosen(form: FormData) -> list[str]:
    chosen = [e for e in form.getlist("events") if isinstance(e, str)]
    return [ALL] if form.get("all_events") == "on" or not chosen else chosen


def list_page(
    request: Request,
    viewer: Viewer,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, Any] | None = None,
    created: dict[str, Any] | None = None,
) -> HTMLResponse:
    ctx = ctx_of(request)
    rows: list[dict[str, Any]] = []
    if viewer.is_owner:
        with ctx.db.read() as session:
            rows = [
                endpoints.endpoint_dict(e)
                for e in endpoints.list_endpoints(session, account_id=viewer.account_id)
            ]
    return render(
        request,
        "settings_webhooks.html",
        viewer=viewer,
        active_nav="settings",
        status=status,
        error=error,
        notice=DONE.get(request.query_params.get("done", "")),
        endpoints=rows,
        catalogue=CATALOGUE,
        values=values or {},
        created=created,
        limit=endpoints.MAX_ENDPOINTS,
    )


def endpoint_page(
    request: Request,
    viewer: Viewer,
    endpoint_id: int,
    *,
    status: int = 200,
    error: str | None = None,
    values: dict[str, Any] | None = None,
    secret: str | None = None,
) -> HTMLResponse:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    zone = viewer.timezone
    with ctx.db.read() as session:
        endpoint = endpoints.endpoint_dict(
            endpoints.get(session, account_id=viewer.account_id, endpoint_id=endpoint_id)
        )
        log = endpoints.deliveries(session, account_id=viewer.account_id, endpoint_id=endpoint_id)
    if endpoint["disabled_at"]:
        endpoint["disabled_on"] = local_time(endpoint["disabled_at"], zone)
    for row in log:
        row["status_text"] = STATUS.get(row["status"], row["status"])
        row["created"] = local_time(row["created_at"], zone)
        row["last_attempt"] = (
            local_time(row["last_attempt_at"], zone) if row["last_attempt_at"] else None
        )
        row["next_attempt"] = (
            local_time(row["next_attempt_at"], zone) if row["next_attempt_at"] else None
        )
    shown = values or {
        "url": endpoint["url"],
        "description": endpoint["description"],
        "events": endpoint["events"],
    }
    return render(
        request,
        "settings_webhook.html",
        viewer=viewer,
        active_nav="settings",
        status=status,
        error=error,
        notice=DONE.get(request.query_params.get("done", "")),
        endpoint=endpoint,
        deliveries=log,
        catalogue=CATALOGUE,
        values=shown,
        secret=secret,
        timeout=f"{ctx.settings.webhook_timeout_seconds:g}",
    )


def _refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    forged = isinstance(refused.error, (CsrfRefused, Forbidden))
    values = {} if forged else _typed(refused.form)
    raw_id = request.path_params.get("endpoint_id")
    if raw_id is None or isinstance(refused.error, NotFound) or forged:
        return list_page(
            request,
            refused.viewer,
            status=refused.status,
            error=refused.message,
            values=values if raw_id is None else None,
        )
    return endpoint_page(
        request,
        refused.viewer,
        _endpoint_id(raw_id),
        status=refused.status,
        error=refused.message,
        values=values if "url" in refused.form else None,
    )


@router.get("/settings/webhooks")
def webhooks(request: Request, viewer: ViewerDep) -> Response:
    return list_page(request, viewer)


@router.post("/settings/webhooks", dependencies=[refused_by(_refused)])
def create(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    with ctx.db.uow() as uow:
        endpoint = endpoints.create(
            uow.session,
            account_id=viewer.account_id,
            url=form_text(form, "url", limit=2048),
            events=_chosen(form),
            description=form_text(form, "description", limit=endpoints.MAX_DESCRIPTION),
            allow_private=ctx.settings.webhook_allow_private_networks,
            now=ctx.clock.now(),
        )
        uow.commit()
        created = {"id": endpoint.id, "url": endpoint.url, "secret": endpoint.secret}
    return list_page(request, viewer, created=created)


@router.get("/settings/webhooks/{endpoint_id}")
def endpoint(request: Request, endpoint_id: str, viewer: ViewerDep) -> Response:
    return endpoint_page(request, viewer, _endpoint_id(endpoint_id))


@router.post("/settings/webhooks/{endpoint_id}", dependencies=[refused_by(_refused)])
def save(request: Request, endpoint_id: str, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    number = _endpoint_id(endpoint_id)
    with ctx.db.uow() as uow:
        endpoints.update(
            uow.session,
            account_id=viewer.account_id,
            endpoint_id=number,
            allow_private=ctx.settings.webhook_allow_private_networks,
            now=ctx.clock.now(),
            url=form_text(form, "url", limit=2048),
            events=_chosen(form),
            description=form_text(form, "description", limit=endpoints.MAX_DESCRIPTION),
            enabled=form.get("enabled") == "on",
        )
        uow.commit()
    return RedirectResponse(f"{PAGE}/{number}?done=saved", status_code=303)


@router.post("/settings/webhooks/{endpoint_id}/test", dependencies=[refused_by(_refused)])
def send_test(
    request: Request, endpoint_id: str, viewer: ViewerDep, form: CheckedFormDep
) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    number = _endpoint_id(endpoint_id)
    with ctx.db.uow() as uow:
        endpoints.send_test(
            uow.session, account_id=viewer.account_id, endpoint_id=number, now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse(f"{PAGE}/{number}?done=test#log", status_code=303)


@router.post("/settings/webhooks/{endpoint_id}/rotate", dependencies=[refused_by(_refused)])
def rotate(request: Request, endpoint_id: str, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    number = _endpoint_id(endpoint_id)
    with ctx.db.uow() as uow:
        rotated = endpoints.rotate_secret(
            uow.session, account_id=viewer.account_id, endpoint_id=number, now=ctx.clock.now()
        )
        uow.commit()
        secret = rotated.secret
    return endpoint_page(request, viewer, number, secret=secret)


@router.post("/settings/webhooks/{endpoint_id}/delete", dependencies=[refused_by(_refused)])
def delete(request: Request, endpoint_id: str, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    with ctx.db.uow() as uow:
        endpoints.remove(
            uow.session, account_id=viewer.account_id, endpoint_id=_endpoint_id(endpoint_id)
        )
        uow.commit()
    return RedirectResponse(f"{PAGE}?done=deleted", status_code=303)


@router.post(
    "/settings/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend",
    dependencies=[refused_by(_refused)],
)
def resend(
    request: Request, endpoint_id: str, delivery_id: str, viewer: ViewerDep, form: CheckedFormDep
) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    number = _endpoint_id(endpoint_id)
    if not delivery_id.isdigit() or not 0 < int(delivery_id[:20]) <= MAX_ID:
        raise NotFound("no such delivery")
    with ctx.db.uow() as uow:
        endpoints.resend(
            uow.session,
            account_id=viewer.account_id,
            endpoint_id=number,
            delivery_id=int(delivery_id),
            now=ctx.clock.now(),
        )
        uow.commit()
    return RedirectResponse(f"{PAGE}/{number}?done=resent#log", status_code=303)
