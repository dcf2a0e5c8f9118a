"""The team's forms on the settings page, and the page where an invitee accepts.

The owner invites by email with a role, changes roles, removes people and
withdraws invitations; ``accounts.team`` keeps the rules (at least one owner, one
account per person). Removing someone deletes their sign-in, which ends their
sessions at once. An invitation link works once, for 7 days; accepting it
creates the user with the password chosen there and signs them in.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from chatmeter.accounts import links, team, users
from chatmeter.errors import ChatmeterError, NotFound
from chatmeter.panel import auth
from chatmeter.panel.common import Viewer, ctx_of, form_text, render, sentence, with_form
from chatmeter.panel.password import limiter_of

router = APIRouter(include_in_schema=False)

MANAGE = "manage the team"
DONE = {
    "invited": "Invitation sent. The link in it works for 7 days.",
    "role": "The role is changed.",
    "removed": "They are removed from the team and signed out.",
    "revoked": "The invitation is withdrawn; its link no longer works.",
}


def _id(value: str) -> int:
    """A row id from the address, or ``NotFound`` for anything else."""
    if not value.isdigit() or len(value) > 18:
        raise NotFound("there is nothing at this address")
    return int(value)


def _team_action(request: Request, form: Any, action: Any) -> Response:
    # Imported here: ``settings`` includes this module's router, so it imports this module.
    from chatmeter.panel.settings import settings_action

    return settings_action(request, form, section="team", action=action, owner_may=MANAGE)


# --- inviting -------------------------------------------------------------------------


@router.post("/settings/team/invite")
async def invite(request: Request) -> Response:
    return await with_form(request, _team_action, _invite)


def _invite(request: Request, viewer: Viewer, form: Any) -> str:
    ctx = ctx_of(request)
    email = form_text(form, "email", limit=320)
    role = team.parse_role(form_text(form, "role", limit=16))
    limiter_of(request).check_action("invite", str(viewer.account_id))
    with ctx.db.uow() as uow:
        team.invite(
            uow.session,
            account_id=viewer.account_id,
            invited_by=viewer.email,
            email=email,
            role=role,
            now=ctx.clock.now(),
        )
        uow.commit()
    ctx.wake_worker()
    return "invited"


@router.post("/settings/team/invitations/{invitation_id}/revoke")
async def revoke(request: Request, invitation_id: str) -> Response:
    def action(request: Request, viewer: Viewer, form: Any) -> str:
        ctx = ctx_of(request)
        with ctx.db.uow() as uow:
            team.revoke_invitation(
                uow.session,
                account_id=viewer.account_id,
                invitation_id=_id(invitation_id),
                now=ctx.clock.now(),
            )
            uow.commit()
        return "revoked"

    return await with_form(request, _team_action, action)


# --- roles and removal ------------------------------------------------------------------


@router.post("/settings/team/{user_id}/role")
async def change_role(request: Request, user_id: str) -> Response:
    def action(request: Request, viewer: Viewer, form: Any) -> str:
        ctx = ctx_of(request)
        role = form_text(form, "role", limit=16)
        with ctx.db.uow() as uow:
            team.change_role(
                uow.session,
                account_id=viewer.account_id,
                user_id=_id(user_id),
                role=role,
                now=ctx.clock.now(),
            )
            uow.commit()
        return "role"

    return await with_form(request, _team_action, action)


@router.post("/settings/team/{user_id}/remove")
async def remove(request: Request, user_id: str) -> Response:
    def action(request: Request, viewer: Viewer, form: Any) -> str | Response:
        ctx = ctx_of(request)
        with ctx.db.uow() as uow:
            removed = team.remove(
                uow.session, account_id=viewer.account_id, user_id=_id(user_id), now=ctx.clock.now()
            )
            uow.commit()
        if removed.id == viewer.user_id:  # an owner left; another owner remains
            auth.forget_session(request)
            response = render(
                request, "sign_in.html", notice="You left the team and are signed out.", email=""
            )
            auth.end_session(response, ctx.settings)
            return response
        return "removed"

    return await with_form(request, _team_action, action)


# --- accepting an invitation --------------------------------------------------------------


@router.get("/invite/accept")
def accept_form(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    try:
        with ctx.db.read() as session:
            offer = team.invitation(session, token=token, now=ctx.clock.now())
    except ChatmeterError as exc:
        return _accept_page(request, status=exc.status_code, problem=sentence(exc.message))
    return _accept_page(request, token=token, offer=offer)


@router.post("/invite/accept")
async def accept(request: Request) -> Response:
    return await with_form(request, _accept)


def _accept(request: Request, form: Any) -> Response:
    ctx = ctx_of(request)
    token = form.get("token", "")
    try:
        auth.check_csrf(request, ctx.settings, form.get(auth.CSRF_FIELD))
        password = form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
        with ctx.db.uow() as uow:
            user = team.accept(uow.session, token=token, password=password, now=ctx.clock.now())
            uow.commit()
    except (links.UnknownLink, links.SpentLink) as exc:
        return _accept_page(request, status=exc.status_code, problem=sentence(exc.message))
    except ChatmeterError as exc:
        offer = _offer(request, token)
        if offer is None:  # the link went bad, or the email got a sign-in, meanwhile
            return _accept_page(request, status=exc.status_code, problem=sentence(exc.message))
        return _accept_page(
            request, status=exc.status_code, error=sentence(exc.message), token=token, offer=offer
        )
    response = RedirectResponse("/panel/dashboard", status_code=303)
    auth.start_session(response, ctx.settings, user)
    return response


def _offer(request: Request, token: object) -> team.Invitation | None:
    ctx = ctx_of(request)
    try:
        with ctx.db.read() as session:
            return team.invitation(session, token=token, now=ctx.clock.now())
    except ChatmeterError:
        return None


def _accept_page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, "invite_accept.html", status=status, **context)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address holds the token
    return response
