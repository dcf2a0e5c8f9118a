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
from chatmeter.panel.deps import (
    CheckedFormDep,
    Refusal,
    ViewerDep,
    ctx_of,
    limiter_of,
    refused_by,
)
from chatmeter.panel.pages.settings import done, refused_in
from chatmeter.panel.rendering import form_text, owner_only, render

router = APIRouter(prefix="/panel", include_in_schema=False)

MANAGE = "manage the team"
TEAM = "team"  # the settings page's section


def _id(value: str) -> int:
    """A row id from the address, or ``NotFound`` for anything else."""
    if not value.isdigit() or len(value) > 18:
        raise NotFound("there is nothing at this address")
    return int(value)


# --- inviting -------------------------------------------------------------------------


@router.post("/settings/team/invite", dependencies=[refused_in(TEAM)])
def invite(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
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
    return done("invited", TEAM)


@router.post("/settings/team/invitations/{invitation_id}/revoke", dependencies=[refused_in(TEAM)])
def revoke(
    request: Request, invitation_id: str, viewer: ViewerDep, form: CheckedFormDep
) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    with ctx.db.uow() as uow:
        team.revoke_invitation(
            uow.session,
            account_id=viewer.account_id,
            invitation_id=_id(invitation_id),
            now=ctx.clock.now(),
        )
        uow.commit()
    return done("revoked", TEAM)


# --- roles and removal ------------------------------------------------------------------


@router.post("/settings/team/{user_id}/role", dependencies=[refused_in(TEAM)])
def change_role(
    request: Request, user_id: str, viewer: ViewerDep, form: CheckedFormDep
) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
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
    return done("role", TEAM)


@router.post("/settings/team/{user_id}/remove", dependencies=[refused_in(TEAM)])
def remove(request: Request, user_id: str, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, MANAGE)
    with ctx.db.uow() as uow:
        removed = team.remove(
            uow.session, account_id=viewer.account_id, user_id=_id(user_id), now=ctx.clock.now()
        )
        uow.commit()
    if removed.id != viewer.user_id:
        return done("removed", TEAM)
    # An owner left; another owner remains.
    auth.forget_session(request)
    response = render(
        request, "sign_in.html", notice="You left the team and are signed out.", email=""
    )
    auth.end_session(response, ctx.settings)
    return response


# --- accepting an invitation --------------------------------------------------------------


def _accept_page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    response = render(request, "invite_accept.html", status=status, **context)
    response.headers["Referrer-Policy"] = "no-referrer"  # the address holds the token
    return response


def _accept_refused(request: Request, refused: Refusal) -> Response:
    token = refused.form.get("token", "")
    offer = None if isinstance(refused.error, links.LINK_ERRORS) else _offer(request, token)
    if offer is None:  # the link is bad, or went bad (or the email got a sign-in) meanwhile
        return _accept_page(request, status=refused.status, problem=refused.message)
    return _accept_page(
        request, status=refused.status, error=refused.message, token=token, offer=offer
    )


def _link_refused(request: Request, refused: Refusal) -> Response:
    return _accept_page(request, status=refused.status, problem=refused.message)


@router.get("/invite/accept", dependencies=[refused_by(_link_refused)])
def accept_form(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.query_params.get("token", "")
    with ctx.db.read() as session:
        offer = team.invitation(session, token=token, now=ctx.clock.now())
    return _accept_page(request, token=token, offer=offer)


@router.post("/invite/accept", dependencies=[refused_by(_accept_refused)])
def accept(request: Request, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    password = form_text(form, "password", limit=users.MAX_PASSWORD_LENGTH)
    with ctx.db.uow() as uow:
        user = team.accept(
            uow.session, token=form.get("token", ""), password=password, now=ctx.clock.now()
        )
        uow.commit()
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
