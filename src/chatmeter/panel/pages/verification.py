"""The email verification link's page, and sending the link again from the dashboard.

The link in the email shows a button rather than verifying on opening, so that
a mail scanner that follows links verifies nothing (``accounts.verification``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import users, verification
from chatmeter.panel.deps import (
    CheckedFormDep,
    MaybeViewerDep,
    Refusal,
    ViewerDep,
    ctx_of,
    limiter_of,
    refused_by,
)
from chatmeter.panel.rendering import owner_only, render

router = APIRouter(prefix="/panel", include_in_schema=False)

DONE = {
    "verified": "Your email address is confirmed. You can now invite teammates.",
    "verification_sent": "We sent a new confirmation link. It works for 3 days.",
}


def _page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, "verify_email.html", status=status, **context)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address holds the token
    return response


def _refused(request: Request, refused: Refusal) -> Response:
    return _page(request, status=refused.status, problem=refused.message)


@router.get("/verify-email", dependencies=[refused_by(_refused)])
def verify_form(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    with ctx.db.read() as session:
        row, account = verification.link(session, token=token, now=ctx.clock.now())
    return _page(request, token=token, email=row.email, account_name=account.name)


@router.post("/verify-email", dependencies=[refused_by(_refused)])
def verify(request: Request, form: CheckedFormDep, viewer: MaybeViewerDep) -> Response:
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        account = verification.verify(
            uow.session, settings=ctx.settings, token=form.get("token", ""), now=ctx.clock.now()
        )
        uow.commit()
    if viewer is not None and viewer.account_id == account.id:
        return RedirectResponse("/panel/dashboard?done=verified", status_code=303)
    return _page(request, confirmed=account.contact_email, signed_in=viewer is not None)


@router.post("/verify-email/resend", dependencies=[refused_by(_refused)])
def resend(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, "confirm the account's email address")
    limiter_of(request).check_action("verify-email", str(viewer.account_id))
    with ctx.db.uow() as uow:
        user = users.get_user(uow.session, user_id=viewer.user_id)
        if user is None:
            return RedirectResponse("/panel/sign-in", status_code=303)
        verification.send_link(uow.session, settings=ctx.settings, user=user, now=ctx.clock.now())
        uow.commit()
    return RedirectResponse("/panel/dashboard?done=verification_sent", status_code=303)
