"""The settings page: account name and time zone, contact email, password, team.

Every form posts to its own address and comes back to ``/panel/settings``: on
success by a redirect with a ``done`` notice, on bad input with the page, its
message in the form's section and nothing changed (``refused_in``). The
account's settings and the team are the owner's to change; every user changes
their own password. The team's forms are ``pages.team``, API keys
``pages.api_keys``.
"""

from __future__ import annotations

import functools
from typing import Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from chatmeter.accounts import contact_email, team, users
from chatmeter.accounts import service as accounts
from chatmeter.accounts.surge_settings import multiple_text as surge_multiple_text
from chatmeter.errors import InvalidInput
from chatmeter.formatting import local_date, local_time
from chatmeter.panel import auth
from chatmeter.panel.deps import (
    CheckedFormDep,
    MaybeViewerDep,
    Refusal,
    Viewer,
    ViewerDep,
    ctx_of,
    limiter_of,
    refused_by,
)
from chatmeter.panel.rendering import form_text, owner_only, render

router = APIRouter(prefix="/panel", include_in_schema=False)

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
    "surge": "Your surge alert settings are saved.",
    "email_sent": "We sent a confirmation link to the new address. "
    "Your contact email changes when it is opened.",
    "email_cancelled": "The contact email change is cancelled.",
    "email_confirmed": "Your contact email is changed. We are telling the old and the new "
    "address by email.",
    "password": "Your password is changed. You are signed out on your other devices.",
    # The team's forms come back to this page too (``pages.team``).
    "invited": "Invitation sent. The link in it works for 7 days.",
    "role": "The role is changed.",
    "removed": "They are removed from the team and signed out.",
    "revoked": "The invitation is withdrawn; its link no longer works.",
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
        surge={
            "multiple": surge_multiple_text(account.surge_multiple_tenths),
            "min_tokens": account.surge_min_tokens,
        },
        zones=zone_groups(zone),
        pending=(
            {"email": pending.email, "until": local_time(pending.expires_at, zone)}
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


def refused_in(section: str) -> Any:
    """A settings form's dependency: its refusal shows the page again, the message in
    ``section`` and the form as typed (never a password)."""

    def page(request: Request, refused: Refusal) -> Response:
        assert refused.viewer is not None
        return settings_page(
            request,
            refused.viewer,
            status=refused.status,
            errors={section: refused.message},
            values=typed_values(refused.form),
        )

    return refused_by(page)


def done(key: str, section: str) -> RedirectResponse:
    """Back to the page, with the ``done`` notice ``key``, at ``section``."""
    return RedirectResponse(f"/panel/settings?done={key}#{section}", status_code=303)


def typed_values(form: FormData) -> dict[str, str]:
    """What the user typed, to fill the form again after an error; never a password."""
    return {
        key: value[:400]
        for key, value in form.items()
        if isinstance(value, str) and key not in SECRET_FIELDS
    }


# --- the page ----------------------------------------------------------------------


@router.get("/settings")
def settings(request: Request, viewer: ViewerDep) -> Response:
    return settings_page(request, viewer)


# --- account name and time zone -----------------------------------------------------


@router.post("/settings/account", dependencies=[refused_in("account")])
def save_account(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, "change the account's settings")
    name = form_text(form, "name", limit=accounts.MAX_NAME_LENGTH)
    zone = accounts.normalise_timezone(form_text(form, "timezone", limit=64))
    with ctx.db.uow() as uow:
        # The same rules as the REST API's PATCH /account: a new zone applies at once,
        # and the next renewal comes at midnight on the 1st there (never twice a month).
        accounts.update_account(
            uow.session, account_id=viewer.account_id, now=ctx.clock.now(), name=name, timezone=zone
        )
        uow.commit()
    return done("account", "account")


# --- surge alerts ------------------------------------------------------------------


@router.post("/settings/surge-alerts", dependencies=[refused_in("surge")])
def save_surge_alerts(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    """The multiple and minimum of surge alerts (``chat.surges``), as in PATCH /account."""
    ctx = ctx_of(request)
    owner_only(viewer, "change the account's settings")
    multiple = form_text(form, "surge_multiple", limit=20)
    minimum = form_text(form, "surge_min_tokens", limit=20).replace(",", "").strip()
    if not minimum.isdigit():
        raise InvalidInput("the minimum must be a whole number of tokens", field="surge_min_tokens")
    with ctx.db.uow() as uow:
        accounts.update_account(
            uow.session,
            account_id=viewer.account_id,
            now=ctx.clock.now(),
            surge_multiple=multiple,
            surge_min_tokens=int(minimum),
        )
        uow.commit()
    return done("surge", "surge")


# --- the contact email -------------------------------------------------------------

CHANGE_EMAIL = "change the contact email"


@router.post("/settings/contact-email", dependencies=[refused_in("contact-email")])
def change_contact_email(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, CHANGE_EMAIL)
    email = accounts.normalise_email(form_text(form, "email", limit=320))
    limiter_of(request).check_action("contact-email", str(viewer.account_id))
    with ctx.db.uow() as uow:
        contact_email.request_change(
            uow.session,
            account_id=viewer.account_id,
            email=email,
            requested_by=viewer.email,
            now=ctx.clock.now(),
        )
        uow.commit()
    return done("email_sent", "contact-email")


@router.post("/settings/contact-email/cancel", dependencies=[refused_in("contact-email")])
def cancel_contact_email(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, CHANGE_EMAIL)
    with ctx.db.uow() as uow:
        contact_email.cancel(uow.session, account_id=viewer.account_id, now=ctx.clock.now())
        uow.commit()
    return done("email_cancelled", "contact-email")


def _confirm_page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, "settings_email_confirm.html", status=status, **context)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address holds the token
    return response


def _confirm_refused(request: Request, refused: Refusal) -> Response:
    return _confirm_page(request, status=refused.status, problem=refused.message)


@router.get("/settings/contact-email/confirm", dependencies=[refused_by(_confirm_refused)])
def confirm_contact_email_form(request: Request) -> Response:
    """The link in the email: shows the change and a button, so a mail scanner that
    opens links does not make it."""
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    with ctx.db.read() as session:
        row = contact_email.link(session, token=token, now=ctx.clock.now())
        account = accounts.get_account(session, account_id=row.account_id)
        change = {"email": row.email, "account_name": account.name}
    return _confirm_page(request, change=change, token=token)


@router.post("/settings/contact-email/confirm", dependencies=[refused_by(_confirm_refused)])
def confirm_contact_email(
    request: Request, form: CheckedFormDep, viewer: MaybeViewerDep
) -> Response:
    ctx = ctx_of(request)
    with ctx.db.uow() as uow:
        account = contact_email.confirm(
            uow.session, token=form.get("token", ""), now=ctx.clock.now()
        )
        uow.commit()
    if viewer is not None and viewer.account_id == account.id:
        return done("email_confirmed", "contact-email")
    return _confirm_page(request, confirmed=account.contact_email, signed_in=viewer is not None)


# --- the password ------------------------------------------------------------------


@router.post("/settings/password", dependencies=[refused_in("password")])
def change_password(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    current = form_text(form, "current_password", limit=users.MAX_PASSWORD_LENGTH)
    new = form_text(form, "new_password", limit=users.MAX_PASSWORD_LENGTH)
    limiter_of(request).check_action("change-password", str(viewer.user_id))
    with ctx.db.uow() as uow:
        user = users.change_password(
            uow.session,
            user_id=viewer.user_id,
            current=current,
            new=new,
            now=ctx.clock.now(),
        )
        uow.commit()
    response = done("password", "password")
    auth.start_session(response, ctx.settings, user)  # with the new secret
    return response
