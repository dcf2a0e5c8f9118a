"""Signed session cookies, CSRF tokens and the sign-in rate limit.

The session cookie is ``user_id.issued_at.signature``, signed with HMAC-SHA256
and ``settings.secret_key``. Every visitor also gets a random ``cm_csrf`` cookie;
a form's CSRF token is that cookie's HMAC, so a page on another site can neither
read nor forge it (signed double submit). Every POST checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

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


class CsrfRefused(ChatmeterError):
    status_code = 403
    code = "csrf_refused"


def _sign(settings: Settings, purpose: str, value: str) -> str:
    key = settings.secret_key.encode()
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _secure(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


# --- the session --------------------------------------------------------------


def session_value(settings: Settings, user_id: int, *, now: float | None = None) -> str:
    payload = f"{user_id}.{int(now if now is not None else time.time())}"
    return f"{payload}.{_sign(settings, 'session', payload)}"


def read_session(settings: Settings, value: str | None, *, now: float | None = None) -> int | None:
    """The signed-in user's id, or None for a missing, forged or expired cookie."""
    if not value or value.count(".") != 2:
        return None
    user_id, issued, signature = value.split(".")
    expected = _sign(settings, "session", f"{user_id}.{issued}")
    if not hmac.compare_digest(signature, expected):
        return None
    if not user_id.isdigit() or not issued.isdigit():
        return None
    if (now if now is not None else time.time()) - int(issued) > SESSION_SECONDS:
        return None
    return int(user_id)


def start_session(response: Response, settings: Settings, user_id: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_value(settings, user_id),
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


# --- the sign-in rate limit ---------------------------------------------------


class SignInLimiter:
    """Counts sign-in attempts per email and per client address, in memory or Redis."""

    def __init__(self, settings: Settings) -> None:
        self._storage = storage_from_string(settings.redis_url or "memory://")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._per_email = parse_many(SIGN_IN_PER_EMAIL)
        self._per_address = parse_many(SIGN_IN_PER_ADDRESS)

    def check(self, *, email: str, address: str) -> None:
        """Count one attempt, or raise ``RateLimited`` if it is one too many."""
        checks = [(item, "email", email.strip().lower()) for item in self._per_email]
        checks += [(item, "address", address) for item in self._per_address]
        for item, *keys in checks:
            if not self._limiter.hit(item, "panel-sign-in", *keys):
                raise RateLimited("too many sign-in attempts; please wait a minute and try again")

    def reset(self) -> None:
        self._storage.reset()


class Forbidden(ChatmeterError):
    status_code = 403
    code = "forbidden"
