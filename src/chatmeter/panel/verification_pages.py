"""The email verification link's page, and sending the link again from the dashboard.

The link in the email shows a button rather than verifying on opening, so that
a mail scanner that follows links verifies nothing (``accounts.verification``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import verification
from chatmeter.accounts.models import User
from chatmeter.errors import ChatmeterError
from chatmeter.panel import auth
from chatmeter.panel.common import (
    ctx_of,
    owner_only,
    render,
    sentence,
    to_sign_in,
    viewer_of,
    with_form,
)
from chatmeter.panel.password import limiter_of

router = APIRouter(include_in_schema=False)

DONE = {
    "verified": "Your email address is confirmed. You can now invite teammates.",
    "verification_sent": "We sent a new confirmation link. It works for 3 days.",
}


@router.get("/verify-email")
def verify_form(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    try:
        with ctx.db.read() as session:
            row, account = verification.link(session, token=token, now=ctx.clock.now())
    except ChatmeterError as exc:
        return _page(request, status=exc.status_code, problem=sentence(exc.message))
    return _page(request, token=token, email=row.email, account_name=account.name)


@router.post("/verify-email")
async def verify(request: Request) -> Response:
    return await with_form(request, _verify)


def _verify(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        with ctx.db.uow() as uow:
            account = verification.verify(
                uow.session, settings=ctx.settings, token=form.get("token", ""), now=ctx.clock.now()
            )
            uow.commit()
    except ChatmeterError as exc:
        return _page(request, status=exc.status_code, problem=sentence(exc.message))
    viewer = viewer_of(request)
    if viewer is not None and viewer.account_id == account.id:
        return RedirectResponse("/panel/dashboard?done=verified", status_code=303)
    return _page(request, confirmed=account.contact_email, signed_in=viewer is not None)


@router.post("/verify-email/resend")
async def resend(request: Request) -> Response:
    return await with_form(request, _resend)


def _resend(request: Request, form: Any) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        owner_only(viewer, "confirm the account's email address")
        limiter_of(request).check_action("verify-email", str(viewer.account_id))
        with ctx.db.uow() as uow:
            user = uow.session.get(User, viewer.user_id)
            if user is None:
                return to_sign_in()
            verification.send_link(
                uow.session, settings=ctx.settings, user=user, now=ctx.clock.now()
            )
            uow.commit()
    except ChatmeterError as exc:
        return _page(request, status=exc.status_code, problem=sentence(exc.message))
    ctx.wake_worker()
    return RedirectResponse("/panel/dashboard?done=verification_sent", status_code=303)


def _page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, "verify_email.html", status=status, **context)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address holds the token
    return response
