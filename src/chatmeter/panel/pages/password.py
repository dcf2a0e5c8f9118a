"""A forgotten password: asking for a reset link by email, and choosing the new password.

The form answers the same whether or not the email signs in anywhere, and is
rate-limited per email and per client address like sign-in. The email holds a
link that works once, for an hour; using it sets the new password, ends the
user's other sessions and signs this browser in. An owner whose account the
operator opened chooses their first password through the same link.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import links, users
from chatmeter.errors import ChatmeterError, InvalidInput
from chatmeter.panel import auth
from chatmeter.panel.deps import (
    CheckedFormDep,
    Refusal,
    client_address,
    ctx_of,
    limiter_of,
    refused_by,
)
from chatmeter.panel.rendering import form_text, render, typed_text

router = APIRouter(prefix="/panel", include_in_schema=False)


# --- forgot password -------------------------------------------------------------------


def _forgot_refused(request: Request, refused: Refusal) -> Response:
    return render(
        request,
        "password_forgot.html",
        status=refused.status,
        error=refused.message,
        email=typed_text(refused, "email", limit=320).strip(),
    )


@router.get("/password/forgot")
def forgot_form(request: Request) -> Response:
    return render(request, "password_forgot.html", email="")


@router.post("/password/forgot", dependencies=[refused_by(_forgot_refused)])
def forgot(request: Request, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    email = form_text(form, "email", limit=320).strip()
    if not email:
        raise InvalidInput("enter the email you sign in with", field="email")
    limiter_of(request).check_password_reset(email=email, address=client_address(request))
    with ctx.db.uow() as uow:
        users.request_password_reset(uow.session, email=email, now=ctx.clock.now())
        uow.commit()
    return render(request, "password_forgot.html", sent=email, email="")


# --- choosing a new password --------------------------------------------------------


def _reset_page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, "password_reset.html", status=status, **context)
    # The address holds the token: never pass it on to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _reset_refused(request: Request, refused: Refusal) -> Response:
    token = refused.form.get("token", "")
    email = None if isinstance(refused.error, links.LINK_ERRORS) else _email_of(request, token)
    if email is None:  # the link is bad, or went bad meanwhile
        return _reset_page(request, status=refused.status, problem=refused.message)
    return _reset_page(
        request, status=refused.status, error=refused.message, token=token, email=email
    )


def _link_refused(request: Request, refused: Refusal) -> Response:
    return _reset_page(request, status=refused.status, problem=refused.message)


@router.get("/password/reset", dependencies=[refused_by(_link_refused)])
def reset_form(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    with ctx.db.read() as session:
        user = users.reset_user(session, token=token, now=ctx.clock.now())
    return _reset_page(request, token=token, email=user.email)


@router.post("/password/reset", dependencies=[refused_by(_reset_refused)])
def reset(request: Request, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    new = form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
    with ctx.db.uow() as uow:
        user = users.reset_password(
            uow.session,
            settings=ctx.settings,
            token=form.get("token", ""),
            password=new,
            now=ctx.clock.now(),
        )
        uow.commit()
    response = RedirectResponse("/panel/dashboard", status_code=303)
    auth.start_session(response, ctx.settings, user)  # with the new secret
    return response


def _email_of(request: Request, token: object) -> str | None:
    """Whose password the link resets, while it still works."""
    ctx = ctx_of(request)
    try:
        with ctx.db.read() as session:
            return users.reset_user(session, token=token, now=ctx.clock.now()).email
    except ChatmeterError:
        return None
