"""Signed session cookies, CSRF tokens and the rate limits of the sign-in forms.

The session cookie is ``user_id.epoch.issued_at.signature``, signed with
HMAC-SHA256 and ``settings.signing_key()``. It is stateless but revocable: it is
good only while ``epoch`` is the user's ``session_epoch``, which signing out,
resetting and changing the password move on. A counter rather than a time, so
that clocks that differ between web servers cannot refuse a fresh sign-in.

Every visitor also gets a random ``cm_csrf`` cookie; a form's CSRF token is
that cookie's HMAC, so a page on another site can neither read nor forge it
(signed double submit). Every POST checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request, Response
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from chatmeter.config import Settings
from chatmeter.errors import ChatmeterError, RateLimited

SESSION_COOKIE = "cm_session"
CSRF_COOKIE = "cm_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 14 * 24 * 3600
SIGN_IN_PER_EMAIL = "5/minute;20/hour"
SIGN_IN_PER_ADDRESS = "30/minute"
PASSWORD_RESET_PER_EMAIL = "5/hour;10/day"
PASSWORD_RESET_PER_ADDRESS = "20/hour"


class CsrfRefused(ChatmeterError):
    status_code = 403
    code = "csrf_refused"


def _sign(settings: Settings, purpose: str, value: str) -> str:
    key = settings.signing_key().encode()
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _secure(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


# --- the session --------------------------------------------------------------


@dataclass(frozen=True)
class SessionClaims:
    user_id: int
    epoch: int


class SessionHolder(Protocol):
    id: int
    session_epoch: int


def session_value(settings: Settings, user: SessionHolder, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    payload = f"{user.id}.{user.session_epoch}.{issued}"
    return f"{payload}.{_sign(settings, 'session', payload)}"


def read_claims(
    settings: Settings, value: str | None, *, now: float | None = None
) -> SessionClaims | None:
    """Who the cookie is for and its epoch; None if missing, forged or expired.

    Whether the epoch is still the user's needs the user's row: ``viewer_of`` checks.
    """
    if not value or value.count(".") != 3:
        return None
    user_id, epoch, issued, signature = value.split(".")
    expected = _sign(settings, "session", f"{user_id}.{epoch}.{issued}")
    if not hmac.compare_digest(signature, expected):
        return None
    if not all(part.isdigit() and len(part) < 19 for part in (user_id, epoch, issued)):
        return None
    if (now if now is not None else time.time()) - int(issued) > SESSION_SECONDS:
        return None
    return SessionClaims(int(user_id), int(epoch))


def start_session(response: Response, settings: Settings, user: SessionHolder) -> None:
    """Sign this browser in as ``user``, in the user's current session epoch."""
    response.set_cookie(
        SESSION_COOKIE,
        session_value(settings, user),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(settings),
        path="/",
    )


def end_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="lax", secure=_secure(settings), path="/"
    )


# --- CSRF ---------------------------------------------------------------------


def csrf_seed(request: Request) -> str:
    """This browser's CSRF cookie value, made up on its first visit."""
    seed = request.cookies.get(CSRF_COOKIE, "")
    if len(seed) != 43:
        seed = getattr(request.state, "csrf_seed", None) or secrets.token_urlsafe(32)
        request.state.csrf_seed = seed
    return seed


def csrf_token(request: Request, settings: Settings) -> str:
    return _sign(settings, "csrf", csrf_seed(request))


def keep_csrf_cookie(request: Request, response: Response, settings: Settings) -> None:
    seed = getattr(request.state, "csrf_seed", None)
    if seed and request.cookies.get(CSRF_COOKIE) != seed:
        response.set_cookie(
            CSRF_COOKIE, seed, httponly=True, samesite="lax", secure=_secure(settings), path="/"
        )


def check_csrf(request: Request, settings: Settings, sent: object) -> None:
    seed = request.cookies.get(CSRF_COOKIE, "")
    if not isinstance(sent, str) or not seed or len(seed) != 43:
        raise CsrfRefused("this form has expired; reload the page and try again")
    if not hmac.compare_digest(sent, _sign(settings, "csrf", seed)):
        raise CsrfRefused("this form has expired; reload the page and try again")


# --- rate limits ------------------------------------------------------------------

# What one email, client address, account or user may try, per action. Password
# reset emails and contact-email confirmations are limited per target so the
# panel cannot be used to flood someone's inbox.
LIMITS = {
    "sign-in": (SIGN_IN_PER_EMAIL, SIGN_IN_PER_ADDRESS),
    "password-reset": (PASSWORD_RESET_PER_EMAIL, PASSWORD_RESET_PER_ADDRESS),
}
ACTION_LIMITS = {
    "change-password": "5/minute;20/hour",  # per user: guessing the current password
    "contact-email": "5/hour;20/day",  # per account: confirmation emails to new addresses
    "invite": "30/hour;100/day",  # per account: invitation emails
}
TOO_MANY = {
    "sign-in": "too many sign-in attempts; please wait a minute and try again",
    "password-reset": "too many password reset requests; please wait a while and try again",
    "change-password": "too many attempts to change the password; please wait and try again",
    "contact-email": "too many contact email changes; please wait a while and try again",
    "invite": "too many invitations for now; please wait a while and try again",
}


class SignInLimiter:
    """Counts attempts at the panel's sensitive forms, in memory or Redis.

    Sign-in and password reset requests count per email and per client address;
    other actions (``ACTION_LIMITS``) per account or user.
    """

    def __init__(self, settings: Settings) -> None:
        self._storage = storage_from_string(settings.redis_url or "memory://")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._per_email = {name: parse_many(rates[0]) for name, rates in LIMITS.items()}
        self._per_address = {name: parse_many(rates[1]) for name, rates in LIMITS.items()}
        self._per_key = {name: parse_many(rates) for name, rates in ACTION_LIMITS.items()}

    def check(self, *, email: str, address: str, action: str = "sign-in") -> None:
        """Count one attempt, or raise ``RateLimited`` if it is one too many."""
        checks = [(item, "email", email.strip().lower()) for item in self._per_email[action]]
        checks += [(item, "address", address) for item in self._per_address[action]]
        for item, *keys in checks:
            if not self._limiter.hit(item, f"panel-{action}", *keys):
                raise RateLimited(TOO_MANY[action])

    def check_action(self, action: str, key: str) -> None:
        """Count one ``action`` by ``key`` (an account or user), or raise ``RateLimited``."""
        for item in self._per_key[action]:
            if not self._limiter.hit(item, f"panel-{action}", key):
                raise RateLimited(TOO_MANY[action])

    def reset(self) -> None:
        self._storage.reset()


class Forbidden(ChatmeterError):
    status_code = 403
    code = "forbidden"
