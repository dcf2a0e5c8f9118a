"""Signing up, in and out.

Sign-in is limited by failures (``panel.limits``): once an email or an address
failed too often, attempts are refused before the password is checked; a success
forgives that email's earlier slips from that address. Sign-up
counts every attempt. Sign-out ends *every* session of the user, not only this
browser's: the cookies are stateless, so the user's row records when their
sessions ended (``auth``) and a stolen cookie stops working too.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from chatmeter.accounts import opening, users
from chatmeter.errors import Unauthorized
from chatmeter.panel import auth
from chatmeter.panel.deps import (
    CheckedFormDep,
    MaybeViewerDep,
    Refusal,
    client_address,
    ctx_of,
    limiter_of,
    refused_by,
)
from chatmeter.panel.rendering import form_text, render, typed_text

router = APIRouter(prefix="/panel", include_in_schema=False)

# The sign-up form's text fields and their lengths.
FIELDS = {"name": 200, "email": 320, "timezone": 64}


def _to_dashboard() -> RedirectResponse:
    return RedirectResponse("/panel/dashboard", status_code=303)


@router.get("")
def panel_home() -> Response:
    return _to_dashboard()


# --- signing up -------------------------------------------------------------------


def _sign_up_refused(request: Request, refused: Refusal) -> Response:
    form = {name: typed_text(refused, name, limit=n) for name, n in FIELDS.items()}
    form["timezone"] = form["timezone"] or "UTC"
    return render(request, "sign_up.html", status=refused.status, error=refused.message, form=form)


@router.get("/sign-up")
def sign_up_form(request: Request, viewer: MaybeViewerDep) -> Response:
    if viewer:
        return _to_dashboard()
    return render(request, "sign_up.html", form={})


@router.post("/sign-up", dependencies=[refused_by(_sign_up_refused)])
def sign_up(request: Request, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    name, email, timezone = (form_text(form, field, limit=n) for field, n in FIELDS.items())
    password = form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
    limiter_of(request).check_sign_up(address=client_address(request))
    with ctx.db.uow() as uow:
        user = opening.sign_up(
            uow.session,
            settings=ctx.settings,
            email=email,
            password=password,
            timezone=timezone or "UTC",
            name=name,
            now=ctx.clock.now(),
        )
        uow.commit()
    response = _to_dashboard()
    auth.start_session(response, ctx.settings, user)
    return response


# --- signing in -------------------------------------------------------------------


def _sign_in_refused(request: Request, refused: Refusal) -> Response:
    email = typed_text(refused, "email", limit=320)
    return render(
        request, "sign_in.html", status=refused.status, error=refused.message, email=email
    )


@router.get("/sign-in")
def sign_in_form(request: Request, viewer: MaybeViewerDep) -> Response:
    if viewer:
        return _to_dashboard()
    return render(request, "sign_in.html", email="")


@router.post("/sign-in", dependencies=[refused_by(_sign_in_refused)])
def sign_in(request: Request, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    email = form_text(form, "email", limit=320)
    password = form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
    limiter = limiter_of(request)
    address = client_address(request)
    # Refused before the password is checked once this email or address failed too
    # often; only a failure counts, so the user's own sign-ins never lock them out.
    limiter.check_sign_in(email=email, address=address)
    try:
        with ctx.db.read() as session:
            user = users.authenticate(session, email=email, password=password)
    except Unauthorized:
        limiter.sign_in_failed(email=email, address=address)
        raise
    limiter.sign_in_succeeded(email=email, address=address)
    response = _to_dashboard()
    auth.start_session(response, ctx.settings, user)
    return response


# --- signing out ------------------------------------------------------------------


def _signed_out(request: Request, refused: Refusal) -> Response:
    return render(request, "sign_in.html", status=refused.status, error=refused.message, email="")


@router.post("/sign-out", dependencies=[refused_by(_signed_out)])
def sign_out(request: Request, form: CheckedFormDep, viewer: MaybeViewerDep) -> Response:
    ctx = ctx_of(request)
    if viewer is not None:
        with ctx.db.uow() as uow:
            user = users.get_user(uow.session, user_id=viewer.user_id)
            if user is not None:
                users.end_sessions(uow.session, user=user)
            uow.commit()
    auth.forget_session(request)  # the sign-in form below is for a browser without a session
    response = render(request, "sign_in.html", notice="You are signed out.", email="")
    auth.end_session(response, ctx.settings)
    return response
