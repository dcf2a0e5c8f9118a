"""What every panel page shares: the signed-in viewer, rendering, form fields and errors.

Each area of the panel (``routes`` for sign-in, dashboard and billing, ``usage``,
``assistant_pages``, ``settings``) is its own router built on these helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from chatmeter.accounts.models import Account, Role, User
from chatmeter.billing import service as billing
from chatmeter.context import Context
from chatmeter.errors import Forbidden, InvalidInput
from chatmeter.panel import auth
from chatmeter.panel.views import dashboard_figures, money_prefix, month_name
from chatmeter.storable import NUL_MESSAGE, has_nul

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["num"] = lambda value: f"{int(value):,}"
templates.env.filters["month"] = month_name

NAV = [
    ("dashboard", "Dashboard"),
    ("assistants", "Assistants"),
    ("usage", "Usage"),
    ("billing", "Billing"),
    ("settings", "Settings"),
]

# Scripts only from the panel's own files (no inline script, no eval), no framing
# (clickjacking), forms only to the panel. Styles allow ``style`` attributes: the
# gauges and an assistant's colour are set there.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True)
class Viewer:
    user_id: int
    email: str
    role: str
    account_id: int
    account_name: str
    timezone: str
    email_verified: bool

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def viewer_of(request: Request) -> Viewer | None:
    """The signed-in user, or None for a missing, forged, expired or ended session.

    A session ends early when its user signs out, resets or changes the password
    (the user's ``session_secret`` is drawn anew), or is removed from the team (the
    row is gone; a later user is never the same, ``auth.belongs_to``).
    """
    ctx = ctx_of(request)
    claims = auth.read_claims(ctx.settings, request.cookies.get(auth.session_cookie(ctx.settings)))
    if claims is None:
        return None
    with ctx.db.read() as session:
        user = session.get(User, claims.user_id)
        if user is None or not auth.belongs_to(ctx.settings, claims, user):
            return None
        account = session.get(Account, user.account_id)
        if account is None:
            return None
        return Viewer(
            user.id,
            user.email,
            user.role,
            account.id,
            account.name,
            account.timezone,
            email_verified=account.email_verified_at is not None,
        )


def sentence(message: str) -> str:
    """A service's message as the panel shows it: a capital letter and a full stop."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def render(
    request: Request, name: str, *, viewer: Viewer | None = None, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page from ``templates/``; pages for a signed-in viewer get the sidebar's figures."""
    ctx = ctx_of(request)
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
        "free_tokens": settings.free_tokens,
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
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    auth.keep_csrf_cookie(request, response, settings)
    return response


def to_sign_in() -> RedirectResponse:
    return RedirectResponse("/panel/sign-in", status_code=303)


def form_text(form: Any, name: str, *, limit: int = 1000) -> str:
    """A text field of a posted form, or ``InvalidInput`` if it is a file, too long, or
    holds a character no database stores alike (``chatmeter.storable``)."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidInput(f"{name.replace('_', ' ')} must be text")
    if len(value) > limit:
        raise InvalidInput(f"the {name.replace('_', ' ')} is too long (at most {limit} characters)")
    if has_nul(value):
        raise InvalidInput(f"the {name.replace('_', ' ')} {NUL_MESSAGE}", field=name)
    return value


def owner_only(viewer: Viewer, what: str = "change billing") -> None:
    if not viewer.is_owner:
        raise Forbidden(f"only the account's owner can {what}")


def problem(status: int, message: str) -> JSONResponse:
    """A JSON error for the panel's scripts: ``{"error": {"message": ...}}``."""
    return JSONResponse({"error": {"message": sentence(message)}}, status_code=status)


async def with_form(
    request: Request, handler: Callable[..., Response], *args: Any, **kwargs: Any
) -> Response:
    """Run ``handler(request, form, ...)`` in a thread; uploaded files are closed after.

    A file sent where text belongs is refused by ``form_text``, and must not be
    left open for the garbage collector.
    """
    async with request.form() as form:
        return await run_in_threadpool(handler, request, form, *args, **kwargs)
