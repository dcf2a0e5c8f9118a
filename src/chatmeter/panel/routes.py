"""The panel's pages and forms under ``/panel``; the "Get more tokens" window posts JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from chatmeter.accounts import opening, users
from chatmeter.assistants import service as assistants
from chatmeter.billing import service as billing
from chatmeter.billing.models import Invoice
from chatmeter.billing.summary import invoice_dict
from chatmeter.errors import ChatmeterError, InvalidInput, Unauthorized
from chatmeter.panel import assistant_pages, auth, settings, usage, verification_pages
from chatmeter.panel.assistant_views import file_counts, status_of
from chatmeter.panel.common import (
    HERE,
    Viewer,
    ctx_of,
    form_text,
    owner_only,
    problem,
    render,
    sentence,
    to_sign_in,
    viewer_of,
    with_form,
)
from chatmeter.panel.limits import SignInLimiter
from chatmeter.panel.password import client_address, limiter_of
from chatmeter.panel.views import billing_figures, dashboard_figures, local_date, money

# Each area of the panel is its own router; this module's catch-all "not found" comes last.
AREAS = [usage.router, assistant_pages.router, settings.router]
router = APIRouter(prefix="/panel", include_in_schema=False)

PACKAGES_MESSAGE = "Enter a whole number of packages from 1 to 1,000."
DONE = {
    "packages": "Your number of packages is changed. It takes effect at your next renewal.",
    "cancelled": "Your subscription is cancelled. Your remaining tokens stay usable until the 1st.",
}


def install(app: FastAPI) -> None:
    """Register the panel's routes and static files on the app."""
    app.state.panel_limiter = SignInLimiter(app.state.ctx.settings)
    # The static files first: the panel's catch-all "not found" page would hide them.
    app.mount("/panel/static", StaticFiles(directory=HERE / "static"), name="panel-static")
    for area in AREAS:
        app.include_router(area)
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/panel/dashboard", status_code=303)


def parse_packages(value: object) -> int:
    """A number of packages from a form or JSON, or ``InvalidInput`` with a readable message."""
    if isinstance(value, bool):
        raise InvalidInput(PACKAGES_MESSAGE, field="packages")
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit() or len(text) > 7:
            raise InvalidInput(PACKAGES_MESSAGE, field="packages")
        value = int(text)
    if not isinstance(value, int) or not billing.MIN_PACKAGES <= value <= billing.MAX_PACKAGES:
        raise InvalidInput(PACKAGES_MESSAGE, field="packages")
    return value


# --- signing up, in and out ---------------------------------------------------


@router.get("")
def panel_home(request: Request) -> Response:
    return RedirectResponse("/panel/dashboard", status_code=303)


@router.get("/sign-up")
def sign_up_form(request: Request) -> Response:
    if viewer_of(request):
        return RedirectResponse("/panel/dashboard", status_code=303)
    return render(request, "sign_up.html", form={})


@router.post("/sign-up")
async def sign_up(request: Request) -> Response:
    return await with_form(request, _sign_up)


def _sign_up(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    values: dict[str, str] = {}
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        values = {
            "name": form_text(form, "name", limit=200),
            "email": form_text(form, "email", limit=320),
            "timezone": form_text(form, "timezone", limit=64) or "UTC",
        }
        password = form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
        limiter_of(request).check_sign_up(address=client_address(request))
        with ctx.db.uow() as uow:
            user = opening.sign_up(
                uow.session,
                settings=ctx.settings,
                email=values["email"],
                password=password,
                timezone=values["timezone"],
                name=values["name"],
                now=ctx.clock.now(),
            )
            uow.commit()
        ctx.wake_worker()  # the verification email
    except ChatmeterError as exc:
        return render(
            request,
            "sign_up.html",
            status=exc.status_code,
            error=sentence(exc.message),
            form=values,
        )
    response = RedirectResponse("/panel/dashboard", status_code=303)
    auth.start_session(response, ctx.settings, user)
    return response


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    if viewer_of(request):
        return RedirectResponse("/panel/dashboard", status_code=303)
    return render(request, "sign_in.html", email="")


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    return await with_form(request, _sign_in)


def _sign_in(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    email = ""
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
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
    except ChatmeterError as exc:
        return render(
            request,
            "sign_in.html",
            status=exc.status_code,
            error=sentence(exc.message),
            email=email,
        )
    response = RedirectResponse("/panel/dashboard", status_code=303)
    auth.start_session(response, ctx.settings, user)
    return response


# --- pages ----------------------------------------------------------------------


@router.get("/dashboard")
def dashboard(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        bots = assistants.list_assistants(session, account_id=viewer.account_id)
        files = file_counts(session, account_id=viewer.account_id)
    # Each row carries its status both ways, so that buying tokens on this page (or
    # running out) switches it without a reload.
    rows = [
        {
            "id": bot.id,
            "name": bot.name,
            "title": bot.widget_title,
            "on": status_of(active=True, counts=files.get(bot.id, {})),
            "off": status_of(active=False, counts=files.get(bot.id, {})),
        }
        for bot in bots
    ]
    return render(
        request,
        "dashboard.html",
        viewer=viewer,
        active_nav="dashboard",
        bots=rows,
        notice=verification_pages.DONE.get(request.query_params.get("done", "")),
    )


# --- billing --------------------------------------------------------------------


def _billing_page(
    request: Request, viewer: Viewer, *, status: int = 200, **context: Any
) -> HTMLResponse:
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        plan = billing_figures(
            session,
            settings=ctx.settings,
            account_id=viewer.account_id,
            timezone=viewer.timezone,
            now=ctx.clock.now(),
        )
    done = request.query_params.get("done", "")
    return render(
        request,
        "billing.html",
        viewer=viewer,
        active_nav="billing",
        plan=plan,
        status=status,
        notice=DONE.get(done),
        **context,
    )


@router.get("/billing")
def billing_page(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    return _billing_page(request, viewer)


@router.post("/billing/packages")
async def change_packages(request: Request) -> Response:
    return await with_form(request, _change_packages)


def _change_packages(request: Request, form: Any) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        owner_only(viewer)
        packages = parse_packages(form.get("packages", ""))
        with ctx.db.uow() as uow:
            billing.change_quantity(
                uow.session, account_id=viewer.account_id, packages=packages, now=ctx.clock.now()
            )
            uow.commit()
    except ChatmeterError as exc:
        return _billing_page(
            request,
            viewer,
            status=exc.status_code,
            error=sentence(exc.message),
            packages_value=str(form.get("packages", ""))[:20],
        )
    return RedirectResponse("/panel/billing?done=packages", status_code=303)


@router.get("/billing/cancel")
def cancel_form(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    return render(request, "cancel.html", viewer=viewer, active_nav="billing")


@router.post("/billing/cancel")
async def cancel(request: Request) -> Response:
    return await with_form(request, _cancel)


def _cancel(request: Request, form: Any) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        owner_only(viewer)
        with ctx.db.uow() as uow:
            billing.cancel(uow.session, account_id=viewer.account_id, now=ctx.clock.now())
            uow.commit()
    except ChatmeterError as exc:
        return render(
            request,
            "cancel.html",
            viewer=viewer,
            active_nav="billing",
            status=exc.status_code,
            error=sentence(exc.message),
        )
    return RedirectResponse("/panel/billing?done=cancelled", status_code=303)


@router.get("/billing/invoices/{invoice_id}")
def receipt(request: Request, invoice_id: str) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        invoice = (
            session.scalar(
                select(Invoice).where(
                    Invoice.id == int(invoice_id), Invoice.account_id == viewer.account_id
                )
            )
            if invoice_id.isdigit() and len(invoice_id) < 19
            else None
        )
        row = invoice_dict(invoice) if invoice is not None else None
    if row is None:
        return render(request, "not_found.html", viewer=viewer, status=404)
    row["amount_text"] = money(row["amount"], row["currency"])
    row["date"] = local_date(row["created_at"], viewer.timezone)
    row["paid_on"] = local_date(row["paid_at"], viewer.timezone) if row["paid_at"] else None
    return render(request, "receipt.html", viewer=viewer, active_nav="billing", invoice=row)


# --- "Get more tokens" ----------------------------------------------------------


@router.post("/tokens")
async def buy_tokens(request: Request) -> Response:
    """Buy packages now; the same ``key`` (made when the window opened) never buys twice."""
    raw = await request.body()
    return await run_in_threadpool(_buy_tokens, request, raw)


def _buy_tokens(request: Request, raw: bytes) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return problem(401, "your session has ended; sign in again")
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, request.headers.get(auth.CSRF_HEADER))
        owner_only(viewer)
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise InvalidInput(PACKAGES_MESSAGE) from exc
        if not isinstance(body, dict):
            raise InvalidInput(PACKAGES_MESSAGE)
        packages = parse_packages(body.get("packages"))
        key = body.get("key")
        if not isinstance(key, str) or not 8 <= len(key) <= 100 or not key.isprintable():
            raise InvalidInput("this window has expired; close it and try again")
        invoice = billing.purchase(
            ctx, account_id=viewer.account_id, packages=packages, key=f"panel:{key}"
        )
    except ChatmeterError as exc:
        return problem(exc.status_code, exc.message)
    with ctx.db.read() as session:
        figures = dashboard_figures(
            session,
            settings=ctx.settings,
            account_id=viewer.account_id,
            timezone=viewer.timezone,
            now=ctx.clock.now(),
        )
    row = invoice_dict(invoice)
    return JSONResponse(
        {
            "invoice": {
                "number": row["number"],
                "packages": row["packages"],
                "tokens": row["tokens"],
                "amount": money(row["amount"], row["currency"]),
            },
            "figures": figures,
        }
    )


@router.get("/figures")
def figures(request: Request) -> Response:
    """The balance as JSON, for the pages to refresh themselves."""
    viewer = viewer_of(request)
    if viewer is None:
        return problem(401, "your session has ended; sign in again")
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        return JSONResponse(
            dashboard_figures(
                session,
                settings=ctx.settings,
                account_id=viewer.account_id,
                timezone=viewer.timezone,
                now=ctx.clock.now(),
            ),
            headers={"Cache-Control": "no-store"},
        )


@router.get("/{rest:path}")
def not_found(request: Request, rest: str) -> Response:
    """Any other address under /panel: a page, not JSON."""
    return render(request, "not_found.html", viewer=viewer_of(request), status=404)
