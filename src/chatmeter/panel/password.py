"""Ending sessions and resetting a forgotten password by email.

Sign-out ends *every* session of the user, not only this browser's: the
cookies are stateless, so the user's row records when their sessions ended
(``auth``) and a stolen cookie stops working too.

Forgot password: the form answers the same whether or not the email signs in
anywhere, and is rate-limited per email and per client address like sign-in.
The email holds a link that works once, for an hour; using it sets the new
password, ends the user's other sessions and signs this browser in.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import links, users
from chatmeter.accounts.models import User
from chatmeter.errors import ChatmeterError, InvalidInput
from chatmeter.panel import auth
from chatmeter.panel.common import ctx_of, form_text, render, sentence, viewer_of, with_form
from chatmeter.panel.limits import SignInLimiter
from chatmeter.web.client import visitor_key

router = APIRouter(include_in_schema=False)


def limiter_of(request: Request) -> SignInLimiter:
    """The panel's one limiter, made by ``routes.install``: it counts every sensitive form."""
    limiter: SignInLimiter = request.app.state.panel_limiter
    return limiter


def client_address(request: Request) -> str:
    """What the panel's limits count a client by: its address (behind a trusted proxy, the
    forwarded one), IPv6 per /64."""
    return visitor_key(request, ctx_of(request).settings)


def _no_referrer(response: HTMLResponse) -> HTMLResponse:
    """The address of a reset page holds the token: never pass it on to another site."""
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --- signing out ------------------------------------------------------------------


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    return await with_form(request, _sign_out)


def _sign_out(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
    except ChatmeterError as exc:
        return render(
            request, "sign_in.html", status=exc.status_code, error=sentence(exc.message), email=""
        )
    viewer = viewer_of(request)
    if viewer is not None:
        with ctx.db.uow() as uow:
            user = uow.session.get(User, viewer.user_id)
            if user is not None:
                users.end_sessions(uow.session, user=user)
            uow.commit()
    auth.forget_session(request)  # the sign-in form below is for a browser without a session
    response = render(request, "sign_in.html", notice="You are signed out.", email="")
    auth.end_session(response, ctx.settings)
    return response


# --- forgot password -------------------------------------------------------------------


@router.get("/password/forgot")
def forgot_form(request: Request) -> Response:
    return render(request, "password_forgot.html", email="")


@router.post("/password/forgot")
async def forgot(request: Request) -> Response:
    return await with_form(request, _forgot)


def _forgot(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    email = ""
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        email = form_text(form, "email", limit=320).strip()
        if not email:
            raise InvalidInput("enter the email you sign in with", field="email")
        limiter_of(request).check_password_reset(email=email, address=client_address(request))
        with ctx.db.uow() as uow:
            users.request_password_reset(uow.session, email=email, now=ctx.clock.now())
            uow.commit()
    except ChatmeterError as exc:
        return render(
            request,
            "password_forgot.html",
            status=exc.status_code,
            error=sentence(exc.message),
            email=email,
        )
    ctx.wake_worker()
    return render(request, "password_forgot.html", sent=email, email="")


# --- choosing a new password --------------------------------------------------------


@router.get("/password/reset")
def reset_form(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    try:
        with ctx.db.read() as session:
            user = users.reset_user(session, token=token, now=ctx.clock.now())
    except ChatmeterError as exc:
        return _reset_page(request, status=exc.status_code, problem=sentence(exc.message))
    return _reset_page(request, token=token, email=user.email)


@router.post("/password/reset")
async def reset(request: Request) -> Response:
    return await with_form(request, _reset)


def _reset(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    token = form.get("token", "")
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        new = form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
        with ctx.db.uow() as uow:
            user = users.reset_password(
                uow.session,
                settings=ctx.settings,
                token=token,
                password=new,
                now=ctx.clock.now(),
            )
            uow.commit()
    except (links.UnknownLink, links.SpentLink) as exc:
        return _reset_page(request, status=exc.status_code, problem=sentence(exc.message))
    except ChatmeterError as exc:
        email = _email_of(request, token)
        if email is None:  # the link went bad meanwhile
            return _reset_page(request, status=exc.status_code, problem=sentence(exc.message))
        return _reset_page(
            request, status=exc.status_code, error=sentence(exc.message), token=token, email=email
        )
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


def _reset_page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    return _no_referrer(render(request, "password_reset.html", status=status, **context))
