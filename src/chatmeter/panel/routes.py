"""The panel's pages and forms under ``/panel``; the "Get more tokens" window posts JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from chatmeter.accounts.models import Account
from chatmeter.assistants import service as assistants
from chatmeter.billing import service as billing
from chatmeter.billing.models import Invoice
from chatmeter.billing.summary import invoice_dict
from chatmeter.context import Context
from chatmeter.errors import ChatmeterError, InvalidInput
from chatmeter.panel import auth
from chatmeter.panel import service as users
from chatmeter.panel.models import Role, User
from chatmeter.panel.views import (
    billing_figures,
    dashboard_figures,
    local_date,
    money,
    money_prefix,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["num"] = lambda value: f"{int(value):,}"
router = APIRouter(prefix="/panel", include_in_schema=False)

NAV = [
    ("dashboard", "Dashboard"),
    ("assistants", "Assistants"),
    ("usage", "Usage"),
    ("billing", "Billing"),
    ("settings", "Settings"),
]
PACKAGES_MESSAGE = "Enter a whole number of packages from 1 to 1,000."
DONE = {
    "packages": "Your number of packages is changed. It takes effect at your next renewal.",
    "cancelled": "Your subscription is cancelled. Your remaining tokens stay usable until the 1st.",
}


def install(app: FastAPI) -> None:
    """Register the panel's routes and static files on the app."""
    app.state.panel_limiter = auth.SignInLimiter(app.state.ctx.settings)
    # The static files first: the panel's catch-all "not found" page would hide them.
    app.mount("/panel/static", StaticFiles(directory=HERE / "static"), name="panel-static")
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/panel/dashboard", status_code=303)


@dataclass(frozen=True)
class Viewer:
    user_id: int
    email: str
    role: str
    account_id: int
    account_name: str
    timezone: str

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _viewer(request: Request) -> Viewer | None:
    ctx = _ctx(request)
    user_id = auth.read_session(ctx.settings, request.cookies.get(auth.SESSION_COOKIE))
    if user_id is None:
        return None
    with ctx.db.read() as session:
        user = session.get(User, user_id)
        account = session.get(Account, user.account_id) if user else None
        if user is None or account is None:
            return None
        return Viewer(user.id, user.email, user.role, account.id, account.name, account.timezone)


def sentence(message: str) -> str:
    """A service's message as the panel shows it: a capital letter and a full stop."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def _render(
    request: Request, name: str, *, viewer: Viewer | None = None, status: int = 200, **context: Any
) -> HTMLResponse:
    ctx = _ctx(request)
    settings = ctx.settings
    page: dict[str, Any] = {
        "viewer": viewer,
        "nav": NAV,
        "csrf_token": auth.csrf_token(request, settings),
        "package_tokens": settings.package_tokens,
        "unit_price_cents": billing.price_cents(settings.package_price),
        "currency": settings.currency,
        "money_prefix": money_prefix(settings.currency),
        "max_packages": billing.MAX_PACKAGES,
    }
    if viewer is not None and "figures" not in context:
        with ctx.db.read() as session:
            page["figures"] = dashboard_figures(
                session,
                settings=settings,
                account_id=viewer.account_id,
                timezone=viewer.timezone,
                now=ctx.clock.now(),
            )
    response = templates.TemplateResponse(request, name, page | context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    auth.keep_csrf_cookie(request, response, settings)
    return response


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/panel/sign-in", status_code=303)


def _form_text(form: Any, name: str, *, limit: int = 1000) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text")
    if len(value) > limit:
        raise InvalidInput(f"the {name.replace('_', ' ')} is too long (at most {limit} characters)")
    return value


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
    if _viewer(request):
        return RedirectResponse("/panel/dashboard", status_code=303)
    return _render(request, "sign_up.html", form={})


@router.post("/sign-up")
async def sign_up(request: Request) -> Response:
    form = await request.form()
    return await run_in_threadpool(_sign_up, request, form)


def _sign_up(request: Request, form: Any) -> Response:
    ctx = _ctx(request)
    values: dict[str, str] = {}
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        values = {
            "name": _form_text(form, "name", limit=200),
            "email": _form_text(form, "email", limit=320),
            "timezone": _form_text(form, "timezone", limit=64) or "UTC",
        }
        password = _form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
        with ctx.db.uow() as uow:
            user = users.sign_up(
                uow.session,
                settings=ctx.settings,
                email=values["email"],
                password=password,
                timezone=values["timezone"],
                name=values["name"],
                now=ctx.clock.now(),
            )
            uow.commit()
    except ChatmeterError as exc:
        return _render(
            request,
            "sign_up.html",
            status=exc.status_code,
            error=sentence(exc.message),
            form=values,
        )
    response = RedirectResponse("/panel/dashboard", status_code=303)
    auth.start_session(response, ctx.settings, user.id)
    return response


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    if _viewer(request):
        return RedirectResponse("/panel/dashboard", status_code=303)
    return _render(request, "sign_in.html", email="")


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await request.form()
    return await run_in_threadpool(_sign_in, request, form)


def _sign_in(request: Request, form: Any) -> Response:
    ctx = _ctx(request)
    email = ""
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        email = _form_text(form, "email", limit=320)
        password = _form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
        limiter: auth.SignInLimiter = request.app.state.panel_limiter
        address = request.client.host if request.client else "unknown"
        limiter.check(email=email, address=address)
        with ctx.db.read() as session:
            user = users.authenticate(session, email=email, password=password)
    except ChatmeterError as exc:
        return _render(
            request,
            "sign_in.html",
            status=exc.status_code,
            error=sentence(exc.message),
            email=email,
        )
    response = RedirectResponse("/panel/dashboard", status_code=303)
    auth.start_session(response, ctx.settings, user.id)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await request.form()
    return await run_in_threadpool(_sign_out, request, form)


def _sign_out(request: Request, form: Any) -> Response:
    ctx = _ctx(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
    except ChatmeterError as exc:
        return _render(
            request, "sign_in.html", status=exc.status_code, error=sentence(exc.message), email=""
        )
    response = _render(request, "sign_in.html", notice="You are signed out.", email="")
    auth.end_session(response, ctx.settings)
    return response


# --- pages ----------------------------------------------------------------------


@router.get("/dashboard")
def dashboard(request: Request) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_sign_in()
    ctx = _ctx(request)
    with ctx.db.read() as session:
        bots = assistants.list_assistants(session, account_id=viewer.account_id)
        rows = [{"id": a.id, "name": a.name, "title": a.widget_title} for a in bots]
    return _render(request, "dashboard.html", viewer=viewer, active_nav="dashboard", bots=rows)


def _coming_soon(section: str, title: str) -> Any:
    def page(request: Request) -> Response:
        viewer = _viewer(request)
        if viewer is None:
            return _to_sign_in()
        return _render(request, "soon.html", viewer=viewer, active_nav=section, title=title)

    return page


for _section, _title in NAV:
    if _section not in ("dashboard", "billing"):
        router.add_api_route(f"/{_section}", _coming_soon(_section, _title), methods=["GET"])


# --- billing --------------------------------------------------------------------


def _billing_page(
    request: Request, viewer: Viewer, *, status: int = 200, **context: Any
) -> HTMLResponse:
    ctx = _ctx(request)
    with ctx.db.read() as session:
        plan = billing_figures(
            session,
            settings=ctx.settings,
            account_id=viewer.account_id,
            timezone=viewer.timezone,
            now=ctx.clock.now(),
        )
    done = request.query_params.get("done", "")
    return _render(
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
    viewer = _viewer(request)
    if viewer is None:
        return _to_sign_in()
    return _billing_page(request, viewer)


@router.post("/billing/packages")
async def change_packages(request: Request) -> Response:
    form = await request.form()
    return await run_in_threadpool(_change_packages, request, form)


def _change_packages(request: Request, form: Any) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_sign_in()
    ctx = _ctx(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        _owner_only(viewer)
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
    viewer = _viewer(request)
    if viewer is None:
        return _to_sign_in()
    return _render(request, "cancel.html", viewer=viewer, active_nav="billing")


@router.post("/billing/cancel")
async def cancel(request: Request) -> Response:
    form = await request.form()
    return await run_in_threadpool(_cancel, request, form)


def _cancel(request: Request, form: Any) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_sign_in()
    ctx = _ctx(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        _owner_only(viewer)
        with ctx.db.uow() as uow:
            billing.cancel(uow.session, account_id=viewer.account_id, now=ctx.clock.now())
            uow.commit()
    except ChatmeterError as exc:
        return _render(
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
    viewer = _viewer(request)
    if viewer is None:
        return _to_sign_in()
    ctx = _ctx(request)
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
        return _render(request, "not_found.html", viewer=viewer, status=404)
    row["amount_text"] = money(row["amount"], row["currency"])
    row["date"] = local_date(row["created_at"], viewer.timezone)
    row["paid_on"] = local_date(row["paid_at"], viewer.timezone) if row["paid_at"] else None
    return _render(request, "receipt.html", viewer=viewer, active_nav="billing", invoice=row)


def _owner_only(viewer: Viewer) -> None:
    if not viewer.is_owner:
        raise auth.Forbidden("only the account's owner can change billing")


# --- "Get more tokens" ----------------------------------------------------------


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": sentence(message)}}, status_code=status)


@router.post("/tokens")
async def buy_tokens(request: Request) -> Response:
    """Buy packages now; the same ``key`` (made when the window opened) never buys twice."""
    raw = await request.body()
    return await run_in_threadpool(_buy_tokens, request, raw)


def _buy_tokens(request: Request, raw: bytes) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _problem(401, "your session has ended; sign in again")
    ctx = _ctx(request)
    try:
        auth.check_csrf(request, ctx.settings, request.headers.get(auth.CSRF_HEADER))
        _owner_only(viewer)
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
        return _problem(exc.status_code, exc.message)
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
    viewer = _viewer(request)
    if viewer is None:
        return _problem(401, "your session has ended; sign in again")
    ctx = _ctx(request)
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
    return _render(request, "not_found.html", viewer=_viewer(request), status=404)
