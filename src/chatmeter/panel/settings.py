"""The settings page: account name and time zone, contact email, password, team.

Every form posts to its own address and comes back to ``/panel/settings``: on
success by a redirect with a ``done`` notice, on bad input with the page, its
message and nothing changed. The account's settings and the team are the
owner's to change; every user changes their own password.

Sessions, sign-out and password reset are ``panel.password``; the team's forms
and the invitation page are ``panel.team_pages``; the email verification link
is ``panel.verification_pages``; API keys are ``panel.api_keys_pages``. They
are included here, so that
``routes.AREAS`` lists one router for all of them.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import contact_email, team, users
from chatmeter.accounts import service as accounts
from chatmeter.errors import ChatmeterError
from chatmeter.panel import api_keys_pages, auth, password, team_pages, verification_pages
from chatmeter.panel.common import (
    Viewer,
    ctx_of,
    form_text,
    owner_only,
    render,
    sentence,
    to_sign_in,
    viewer_of,
    with_form,
)
from chatmeter.panel.views import local_date

router = APIRouter(prefix="/panel", include_in_schema=False)
router.include_router(password.router)
router.include_router(team_pages.router)
router.include_router(verification_pages.router)
router.include_router(api_keys_pages.router)

# Zones people pick; the legacy aliases (US/Eastern, GB, Etc/GMT+5...) stay valid
# through the API and are shown when an account already uses one.
REGIONS = (
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)
DONE = {
    "account": "Your account settings are saved.",
    "email_sent": "We sent a confirmation link to the new address. "
    "Your contact email changes when it is opened.",
    "email_cancelled": "The contact email change is cancelled.",
    "email_confirmed": "Your contact email is changed. We are telling the old and the new "
    "address by email.",
    "password": "Your password is changed. You are signed out on your other devices.",
    **team_pages.DONE,
}
# Fields never written back into a form after an error.
SECRET_FIELDS = frozenset({auth.CSRF_FIELD, "current_password", "new_password", "password"})


@functools.cache
def _regional_zones() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The zones under ``REGIONS``, by region; read from the zone database once."""
    zones = available_timezones()
    return tuple(
        (region, tuple(sorted(z for z in zones if z.startswith(region + "/"))))
        for region in REGIONS
    )


def zone_groups(current: str) -> list[tuple[str, list[str]]]:
    """IANA zones grouped by region for the select, with ``current`` always among them."""
    groups: list[tuple[str, list[str]]] = [("", ["UTC"])]
    groups += [(region, list(names)) for region, names in _regional_zones()]
    if current != "UTC" and not any(current in names for _, names in groups):
        groups.insert(1, ("Current", [current]))
    return groups


def settings_page(
    request: Request,
    viewer: Viewer,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    """The page with every section's figures; ``errors`` by section, ``values`` as typed."""
    ctx = ctx_of(request)
    now = ctx.clock.now()
    with ctx.db.read() as session:
        account = accounts.get_account(session, account_id=viewer.account_id)
        pending = contact_email.pending(session, account_id=viewer.account_id, now=now)
        people = team.members(session, account_id=viewer.account_id)
        invited = team.invitations(session, account_id=viewer.account_id, now=now)
    zone = account.timezone
    owners = sum(1 for person in people if person.role == "owner")
    return render(
        request,
        "settings.html",
        viewer=viewer,
        active_nav="settings",
        status=status,
        notice=DONE.get(request.query_params.get("done", "")),
        errors=errors or {},
        values=values or {},
        account={"name": account.name, "contact_email": account.contact_email, "timezone": zone},
        zones=zone_groups(zone),
        pending=(
            {"email": pending.email, "until": _local_time(pending.expires_at, zone)}
            if pending
            else None
        ),
        members=[
            {
                "id": person.id,
                "email": person.email,
                "role": person.role,
                "since": local_date(person.created_at, zone),
                "is_you": person.id == viewer.user_id,
                "last_owner": person.role == "owner" and owners <= 1,
            }
            for person in people
        ],
        invitations=[
            {
                "id": row.id,
                "email": row.email,
                "role": row.role,
                "until": local_date(row.expires_at, zone),
            }
            for row in invited
        ],
    )


def settings_action(
    request: Request,
    form: Any,
    *,
    section: str,
    action: Callable[[Request, Viewer, Any], str | Response],
    owner_may: str | None = None,
) -> Response:
    """Run one form of the page: sign-in, CSRF and role checks, then ``action``.

    ``action`` returns the ``done`` notice's key (or a response of its own); a
    ``ChatmeterError`` shows the page again with its message in ``section``.
    """
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    ctx = ctx_of(request)
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        if owner_may:
            owner_only(viewer, owner_may)
        outcome = action(request, viewer, form)
    except ChatmeterError as exc:
        return settings_page(
            request,
            viewer,
            status=exc.status_code,
            errors={section: sentence(exc.message)},
            values=typed_values(form),
        )
    if isinstance(outcome, Response):
        return outcome
    return RedirectResponse(f"/panel/settings?done={outcome}#{section}", status_code=303)


def typed_values(form: Any) -> dict[str, str]:
    """What the user typed, to fill the form again after an error; never a password."""
    return {
        key: value[:400]
        for key, value in form.items()
        if isinstance(value, str) and key not in SECRET_FIELDS
    }


def _local_time(instant: dt.datetime, zone: str) -> str:
    return f"{local_date(instant, zone)}, {instant.astimezone(ZoneInfo(zone)):%H:%M}"


# --- the page ----------------------------------------------------------------------


@router.get("/settings")
def settings(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return to_sign_in()
    return settings_page(request, viewer)


# --- account name and time zone -----------------------------------------------------


@router.post("/settings/account")
async def save_account(request: Request) -> Response:
    return await with_form(
        request,
        settings_action,
        section="account",
        action=_save_account,
        owner_may="change the account's settings",
    )


def _save_account(request: Request, viewer: Viewer, form: Any) -> str:
    ctx = ctx_of(request)
    name = form_text(form, "name", limit=accounts.MAX_NAME_LENGTH)
    zone = accounts.normalise_timezone(form_text(form, "timezone", limit=64))
    with ctx.db.uow() as uow:
        # The same rules as the REST API's PATCH /account: a new zone applies at once,
        # and the next renewal comes at midnight on the 1st there (never twice a month).
        accounts.update_account(
            uow.session, account_id=viewer.account_id, now=ctx.clock.now(), name=name, timezone=zone
        )
        uow.commit()
    return "account"


# --- the contact email -------------------------------------------------------------


@router.post("/settings/contact-email")
async def change_contact_email(request: Request) -> Response:
    return await with_form(
        request,
        settings_action,
        section="contact-email",
        action=_change_contact_email,
        owner_may="change the contact email",
    )


def _change_contact_email(request: Request, viewer: Viewer, form: Any) -> str:
    ctx = ctx_of(request)
    email = accounts.normalise_email(form_text(form, "email", limit=320))
    password.limiter_of(request).check_action("contact-email", str(viewer.account_id))
    with ctx.db.uow() as uow:
        contact_email.request_change(
            uow.session,
            account_id=viewer.account_id,
            email=email,
            requested_by=viewer.email,
            now=ctx.clock.now(),
        )
        uow.commit()
    ctx.wake_worker()
    return "email_sent"


@router.post("/settings/contact-email/cancel")
async def cancel_contact_email(request: Request) -> Response:
    return await with_form(
        request,
        settings_action,
        section="contact-email",
        action=_cancel_contact_email,
        owner_may="change the contact email",
    )


def _cancel_contact_email(request: Request, viewer: Viewer, form: Any) -> str:
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        contact_email.cancel(uow.session, account_id=viewer.account_id, now=ctx.clock.now())
        uow.commit()
    return "email_cancelled"


@router.get("/settings/contact-email/confirm")
def confirm_contact_email_form(request: Request) -> Response:
    """The link in the email: shows the change and a button, so a mail scanner that
    opens links does not make it."""
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    try:
        with ctx.db.read() as session:
            row = contact_email.link(session, token=token, now=ctx.clock.now())
            account = accounts.get_account(session, account_id=row.account_id)
            change = {"email": row.email, "account_name": account.name}
    except ChatmeterError as exc:
        return _confirm_page(request, status=exc.status_code, problem=sentence(exc.message))
    return _confirm_page(request, change=change, token=token)


@router.post("/settings/contact-email/confirm")
async def confirm_contact_email(request: Request) -> Response:
    return await with_form(request, _confirm_contact_email)


def _confirm_contact_email(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    token = form.get("token", "")
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        with ctx.db.uow() as uow:
            account = contact_email.confirm(uow.session, token=token, now=ctx.clock.now())
            uow.commit()
    except ChatmeterError as exc:
        return _confirm_page(request, status=exc.status_code, problem=sentence(exc.message))
    ctx.wake_worker()
    viewer = viewer_of(request)
    if viewer is not None and viewer.account_id == account.id:
        return RedirectResponse("/panel/settings?done=email_confirmed#contact-email", 303)
    return _confirm_page(request, confirmed=account.contact_email, signed_in=viewer is not None)


def _confirm_page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, "settings_email_confirm.html", status=status, **context)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address holds the token
    return response


# --- the password ------------------------------------------------------------------


@router.post("/settings/password")
async def change_password(request: Request) -> Response:
    return await with_form(request, settings_action, section="password", action=_change_password)


def _change_password(request: Request, viewer: Viewer, form: Any) -> Response:
    ctx = ctx_of(request)
    current = form_text(form, "current_password", limit=users.MAX_PASSWORD_LENGTH)
    new = form_text(form, "new_password", limit=users.MAX_PASSWORD_LENGTH)
    password.limiter_of(request).check_action("change-password", str(viewer.user_id))
    with ctx.db.uow() as uow:
        user = users.change_password(
            uow.session,
            user_id=viewer.user_id,
            current=current,
            new=new,
            now=ctx.clock.now(),
        )
        uow.commit()
    response = RedirectResponse("/panel/settings?done=password#password", status_code=303)
    auth.start_session(response, ctx.settings, user)  # with the new secret
    return response
