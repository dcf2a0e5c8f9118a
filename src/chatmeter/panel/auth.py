"""Signed session cookies, CSRF tokens and the rate limits of the sign-in forms.

The session cookie is ``user_id.issued_at.signature``: HMAC-SHA256 with
``settings.signing_key()`` over the user's id, the time it was issued and the
user's ``session_secret``, a random value of the user's own. The cookie is
stateless but revocable and names one user only: signing out, resetting or
changing the password draws a new secret, which ends every older session; and
a user created later with the same id (should an id ever be handed out again)
has another secret, so an old cookie can never open it.

Every visitor also gets a random CSRF cookie (the seed); a form's CSRF token is
the HMAC of that seed *and* of the browser's session cookie, so a page on
another site can neither read nor forge it, and a token works only with the
session it was shown to (signed double submit). Every POST checks it.

Under https (``CHATMETER_BASE_URL``) both cookies are ``Secure`` and carry the
``__Host-`` prefix, so that no other host (a sibling subdomain) can plant or
overwrite them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request, Response

from chatmeter.config import Settings
from chatmeter.errors import ChatmeterError

SESSION_COOKIE = "cm_session"
CSRF_COOKIE = "cm_csrf"
HOST_PREFIX = "__Host-"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 14 * 24 * 3600
FORM_EXPIRED = "this form has expired; reload the page and try again"


class CsrfRefused(ChatmeterError):
    status_code = 403
    code = "csrf_refused"


def _sign(settings: Settings, purpose: str, value: str) -> str:
    key = settings.signing_key().encode()
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def secure(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def session_cookie(settings: Settings) -> str:
    """The session cookie's name: ``__Host-cm_session`` under https."""
    return HOST_PREFIX + SESSION_COOKIE if secure(settings) else SESSION_COOKIE


def csrf_cookie(settings: Settings) -> str:
    """The CSRF seed cookie's name: ``__Host-cm_csrf`` under https."""
    return HOST_PREFIX + CSRF_COOKIE if secure(settings) else CSRF_COOKIE


# --- the session --------------------------------------------------------------


@dataclass(frozen=True)
class SessionClaims:
    """What a well-formed, unexpired cookie says; ``belongs_to`` checks whose it is."""

    user_id: int
    issued: int
    signature: str


class SessionHolder(Protocol):
    id: int
    session_secret: str


def _session_signature(settings: Settings, user_id: int, issued: int, secret: str) -> str:
    return _sign(settings, "session", f"{user_id}.{issued}.{secret}")


def session_value(settings: Settings, user: SessionHolder, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    signature = _session_signature(settings, user.id, issued, user.session_secret)
    return f"{user.id}.{issued}.{signature}"


def read_claims(
    settings: Settings, value: str | None, *, now: float | None = None
) -> SessionClaims | None:
    """The user a cookie names and when it was issued; None if malformed or expired.

    Whether the cookie is really that user's needs the user's row: ``belongs_to``.
    """
    if not value or not value.isascii() or value.count(".") != 2:
        return None
    user_id, issued, signature = value.split(".")
    if not all(part.isdigit() and len(part) < 19 for part in (user_id, issued)):
        return None
    if len(signature) != 64:
        return None
    if (now if now is not None else time.time()) - int(issued) > SESSION_SECONDS:
        return None
    return SessionClaims(int(user_id), int(issued), signature)


def belongs_to(settings: Settings, claims: SessionClaims, user: SessionHolder) -> bool:
    """True when the cookie was issued to this very user, since their sessions last ended."""
    if user.id != claims.user_id or not user.session_secret:
        return False
    expected = _session_signature(settings, user.id, claims.issued, user.session_secret)
    return hmac.compare_digest(claims.signature, expected)


def session_of(request: Request, settings: Settings) -> str:
    """The session cookie this browser holds, as this response leaves it."""
    override: str | None = getattr(request.state, "session_value", None)
    if override is not None:
        return override
    return request.cookies.get(session_cookie(settings), "")


def start_session(response: Response, settings: Settings, user: SessionHolder) -> None:
    """Sign this browser in as ``user``, with the user's current session secret.

    Callers redirect: the next page's forms get CSRF tokens bound to the new session.
    """
    response.set_cookie(
        session_cookie(settings),
        session_value(settings, user),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=secure(settings),
        path="/",
    )


def forget_session(request: Request) -> None:
    """Pages rendered from now on in this request are for a browser without a session."""
    request.state.session_value = ""


def end_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        session_cookie(settings), httponly=True, samesite="lax", secure=secure(settings), path="/"
    )


# --- CSRF ---------------------------------------------------------------------


def _seed_ok(seed: str) -> bool:
    return len(seed) == 43 and seed.isascii()


def csrf_seed(request: Request, settings: Settings) -> str:
    """This browser's CSRF cookie value, made up on its first visit."""
    seed = request.cookies.get(csrf_cookie(settings), "")
    if not _seed_ok(seed):
        seed = getattr(request.state, "csrf_seed", None) or secrets.token_urlsafe(32)
        request.state.csrf_seed = seed
    return seed


def _csrf_for(settings: Settings, seed: str, session: str) -> str:
    # The session is hashed first: the token stays a fixed-size HMAC whatever the cookie holds.
    bound = hashlib.sha256(session.encode("utf-8", "replace")).hexdigest()
    return _sign(settings, "csrf", f"{seed}.{bound}")


def csrf_token(request: Request, settings: Settings) -> str:
    return _csrf_for(settings, csrf_seed(request, settings), session_of(request, settings))


def keep_csrf_cookie(request: Request, response: Response, settings: Settings) -> None:
    seed = getattr(request.state, "csrf_seed", None)
    name = csrf_cookie(settings)
    if seed and request.cookies.get(name) != seed:
        response.set_cookie(
            name, seed, httponly=True, samesite="lax", secure=secure(settings), path="/"
        )


def check_csrf(request: Request, settings: Settings, sent: object) -> None:
    """``CsrfRefused`` unless ``sent`` is the token of this browser's seed and session."""
    seed = request.cookies.get(csrf_cookie(settings), "")
    if not isinstance(sent, str) or not sent.isascii() or not _seed_ok(seed):
        raise CsrfRefused(FORM_EXPIRED)
    session = request.cookies.get(session_cookie(settings), "")
    if not hmac.compare_digest(sent, _csrf_for(settings, seed, session)):
        raise CsrfRefused(FORM_EXPIRED)
