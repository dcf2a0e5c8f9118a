"""What a panel route asks for in its signature: the viewer, the posted form, the CSRF
check, and the page that shows what it refuses.

    @router.post("/billing/cancel", dependencies=[refused_by(cancel_page)])
    def cancel(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:

They run in that order:

- ``refused_by(page)``: a ``ChatmeterError`` raised from here on is shown by ``page``
  (``web.errors`` calls it): the page's own form again, with the message and the
  status of the error. ``refused_as_json`` answers the pages' scripts instead.
- ``ViewerDep``: the signed-in user; a browser without a session is sent to the
  sign-in page (``SignInRequired``). ``ScriptViewerDep`` answers a script with 401.
  ``MaybeViewerDep`` is None for nobody.
- ``FormDep``: the posted form, read once, within the request's body limits
  (``http.limits``); its uploaded files are closed when the request ends, a file
  sent where text belongs is refused by ``form_text``. ``CheckedFormDep`` is the
  form once its CSRF token is checked (``auth.check_csrf``); ``CheckedScriptDep``
  checks the token a script sends in its header, and ``BodyDep`` is the script's
  JSON. No route checks a token by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData

from chatmeter.accounts.models import Account, Role, User
from chatmeter.context import Context
from chatmeter.errors import ChatmeterError, Unauthorized
from chatmeter.http.client import visitor_key
from chatmeter.panel import auth
from chatmeter.panel.limits import SignInLimiter

SESSION_ENDED = "your session has ended; sign in again"


class SignInRequired(Exception):
    """Nobody is signed in: the page sends the browser to sign in (``app.install``)."""


class NoSuchPage(Exception):
    """The address names nothing of the viewer's: the "not found" page (``app.install``)."""


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


@dataclass(frozen=True)
class Refusal:
    """A refused request as its page shows it again: the error, who asked, what they sent."""

    error: ChatmeterError
    viewer: Viewer | None
    form: FormData

    @property
    def status(self) -> int:
        return self.error.status_code

    @property
    def message(self) -> str:
        return sentence(self.error.message)


ErrorPage = Callable[[Request, Refusal], Response]


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def limiter_of(request: Request) -> SignInLimiter:
    """The panel's one limiter, made by ``app.install``: it counts every sensitive form."""
    limiter: SignInLimiter = request.app.state.panel_limiter
    return limiter


def client_address(request: Request) -> str:
    """What the panel's limits count a client by: its address (behind a trusted proxy, the
    forwarded one), IPv6 per /64."""
    return visitor_key(request, ctx_of(request).settings)


def sentence(message: str) -> str:
    """A service's message as the panel shows it: a capital letter and a full stop."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


# --- the viewer --------------------------------------------------------------------


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


def maybe_viewer(request: Request) -> Viewer | None:
    viewer = viewer_of(request)
    request.state.viewer = viewer
    return viewer


def signed_in(viewer: Annotated[Viewer | None, Depends(maybe_viewer)]) -> Viewer:
    if viewer is None:
        raise SignInRequired
    return viewer


def script_signed_in(viewer: Annotated[Viewer | None, Depends(maybe_viewer)]) -> Viewer:
    if viewer is None:
        raise Unauthorized(SESSION_ENDED)
    return viewer


MaybeViewerDep = Annotated[Viewer | None, Depends(maybe_viewer)]
ViewerDep = Annotated[Viewer, Depends(signed_in)]
ScriptViewerDep = Annotated[Viewer, Depends(script_signed_in)]


# --- the form and its CSRF token ----------------------------------------------------


async def posted_form(request: Request) -> AsyncIterator[FormData]:
    async with request.form() as form:
        request.state.form = form
        yield form


FormDep = Annotated[FormData, Depends(posted_form)]


def checked_form(request: Request, form: FormDep) -> FormData:
    auth.check_csrf(request, ctx_of(request).settings, form.get(auth.CSRF_FIELD))
    return form


def checked_script(request: Request) -> None:
    auth.check_csrf(request, ctx_of(request).settings, request.headers.get(auth.CSRF_HEADER))


async def posted_body(request: Request) -> bytes:
    return await request.body()


CheckedFormDep = Annotated[FormData, Depends(checked_form)]
CheckedScriptDep = Annotated[None, Depends(checked_script)]
BodyDep = Annotated[bytes, Depends(posted_body)]


# --- the page that shows a refusal --------------------------------------------------


def refused_by(page: ErrorPage) -> Any:
    """A route's dependency: its ``ChatmeterError`` is shown by ``page``."""

    def shown_by(request: Request) -> None:
        request.state.error_page = lambda error: page(request, refusal(request, error))

    return Depends(shown_by)


def refusal(request: Request, error: ChatmeterError) -> Refusal:
    state = request.state
    return Refusal(error, getattr(state, "viewer", None), getattr(state, "form", FormData()))


def problem(status: int, message: str) -> JSONResponse:
    """A JSON error for the panel's scripts: ``{"error": {"message": ...}}``."""
    return JSONResponse({"error": {"message": sentence(message)}}, status_code=status)


def json_refusal(request: Request, refused: Refusal) -> Response:
    """A refusal as the pages' scripts read it."""
    response = problem(refused.status, refused.error.message)
    response.headers.update(refused.error.headers)
    return response


# The pages' scripts (buying tokens, the test chat, uploads, file status) read JSON.
refused_as_json = refused_by(json_refusal)
