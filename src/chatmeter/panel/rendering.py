"""How every panel page is rendered: the templates, the sidebar's figures, the security
headers; and reading a form's text fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from chatmeter.billing import invoices, subscriptions
from chatmeter.errors import Forbidden, InvalidInput
from chatmeter.formatting import month_name
from chatmeter.panel import auth
from chatmeter.panel.contrast import text_on
from chatmeter.panel.deps import Refusal, Viewer, ctx_of
from chatmeter.panel.figures import dashboard_figures, money_prefix
from chatmeter.storable import NUL_MESSAGE, has_nul

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["num"] = lambda value: f"{int(value):,}"
templates.env.filters["month"] = month_name
templates.env.filters["text_on"] = text_on

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
        "unit_price_cents": invoices.price_cents(settings.package_price),
        # The tax every new invoice adds, in hundredths of a percent (20 % → 2000).
        "tax_hundredths": int(settings.tax_rate * 100),
        "tax_rate_text": invoices.rate_text(settings.tax_rate),
        "unit_total_cents": invoices.price_cents(settings.package_price)
        + invoices.tax_cents(invoices.price_cents(settings.package_price), settings.tax_rate),
        "currency": settings.currency,
        "money_prefix": money_prefix(settings.currency),
        "max_packages": subscriptions.MAX_PACKAGES,
        "free_tokens": settings.free_tokens,
        # "1 month", "3 months": how long unused package tokens roll over; "" when they don't.
        "rollover_text": rollover_text(settings.rollover_months),
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


def rollover_text(months: int) -> str:
    return "" if not months else f"{months} month" + ("" if months == 1 else "s")


def form_text(form: FormData, name: str, *, limit: int = 1000) -> str:
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


def typed_text(refused: Refusal, name: str, *, limit: int = 1000) -> str:
    """A text field of a refused form as typed, to fill the form again: empty if it was
    not acceptable text, and for a forged form (the CSRF token did not match)."""
    if isinstance(refused.error, auth.CsrfRefused):
        return ""
    try:
        return form_text(refused.form, name, limit=limit)
    except InvalidInput:
        return ""


def owner_only(viewer: Viewer, what: str = "change billing") -> None:
    if not viewer.is_owner:
        raise Forbidden(f"only the account's owner can {what}")
