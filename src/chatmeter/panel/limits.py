"""Rate limits of the panel's sensitive forms, counted in memory or in Redis.

- Sign-in counts *failures* only, per email and client address, per address and
  per email: a successful sign-in never counts, and a stranger typing wrong
  passwords from one address uses up that address's allowance, not the user's.
  A successful sign-in also forgives that email's slips from that address (the
  per-address and per-email counts stay, so guessing stays bounded). Once a limit
  is reached, further attempts are refused before the password is checked, so the
  allowance also bounds guessing.
- Sign-up counts every attempt (each costs an argon2 hash), per client address
  and across all addresses (``CHATMETER_SIGN_UP_RATE_PER_ADDRESS`` and
  ``CHATMETER_SIGN_UP_RATE``).
- Password reset requests count per email and per address, so that the form
  cannot flood someone's inbox.
- Other actions (``ACTION_LIMITS``) count per account or user.
"""

from __future__ import annotations

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from chatmeter.config import Settings
from chatmeter.errors import RateLimited

SIGN_IN_FAILURES_PER_EMAIL_AND_ADDRESS = "5/minute;20/hour"
SIGN_IN_FAILURES_PER_ADDRESS = "30/minute;300/hour"
# Across every address: bounds guessing from many addresses at once. Set high, so
# that locking a user out takes many addresses, not one stranger.
SIGN_IN_FAILURES_PER_EMAIL = "100/hour;500/day"
PASSWORD_RESET_PER_EMAIL = "5/hour;10/day"
PASSWORD_RESET_PER_ADDRESS = "20/hour"

ACTION_LIMITS = {
    "change-password": "5/minute;20/hour",  # per user: guessing the current password
    "contact-email": "5/hour;20/day",  # per account: confirmation emails to new addresses
    "invite": "30/hour;100/day",  # per account: invitation emails
    "verify-email": "5/hour;20/day",  # per account: verification emails sent again
    "api-key": "30/hour;100/day",  # per account: API keys made in the panel
}
TOO_MANY = {
    "sign-in": "too many sign-in attempts; please wait a minute and try again",
    "sign-up": "too many sign-ups from here for now; please wait a while and try again",
    "password-reset": "too many password reset requests; please wait a while and try again",
    "change-password": "too many attempts to change the password; please wait and try again",
    "contact-email": "too many contact email changes; please wait a while and try again",
    "invite": "too many invitations for now; please wait a while and try again",
    "verify-email": "too many verification emails for now; please wait a while and try again",
    "api-key": "too many new API keys for now; please wait a while and try again",
}

Check = tuple[RateLimitItem, tuple[str, ...]]


class SignInLimiter:
    """Counts attempts at the panel's sensitive forms (one per app, ``app.install``)."""

    def __init__(self, settings: Settings) -> None:
        self._storage = storage_from_string(settings.redis_url or "memory://")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._rates = {
            "sign-in-pair": parse_many(SIGN_IN_FAILURES_PER_EMAIL_AND_ADDRESS),
            "sign-in-address": parse_many(SIGN_IN_FAILURES_PER_ADDRESS),
            "sign-in-email": parse_many(SIGN_IN_FAILURES_PER_EMAIL),
            "sign-up-address": parse_many(settings.sign_up_rate_per_address),
            "sign-up-all": parse_many(settings.sign_up_rate),
            "password-reset-email": parse_many(PASSWORD_RESET_PER_EMAIL),
            "password-reset-address": parse_many(PASSWORD_RESET_PER_ADDRESS),
        }
        self._per_key = {name: parse_many(rates) for name, rates in ACTION_LIMITS.items()}

    # --- sign-in: failures only ---------------------------------------------------

    def _sign_in_checks(self, email: str, address: str) -> list[Check]:
        email = email.strip().lower()
        return [
            *[(item, ("pair", email, address)) for item in self._rates["sign-in-pair"]],
            *[(item, ("address", address)) for item in self._rates["sign-in-address"]],
            *[(item, ("email", email)) for item in self._rates["sign-in-email"]],
        ]

    def check_sign_in(self, *, email: str, address: str) -> None:
        """``RateLimited`` if this email or address failed too often; counts nothing."""
        for item, keys in self._sign_in_checks(email, address):
            if not self._limiter.test(item, "panel-sign-in", *keys):
                raise RateLimited(TOO_MANY["sign-in"])

    def sign_in_failed(self, *, email: str, address: str) -> None:
        """Count one failed sign-in (a wrong email or password)."""
        for item, keys in self._sign_in_checks(email, address):
            self._limiter.hit(item, "panel-sign-in", *keys)

    def sign_in_succeeded(self, *, email: str, address: str) -> None:
        """Forget this email's failures from this address: whoever typed the right
        password is not guessing, and earlier slips should not lock them out later."""
        pair = ("pair", email.strip().lower(), address)
        for item in self._rates["sign-in-pair"]:
            self._limiter.clear(item, "panel-sign-in", *pair)

    # --- sign-up and password reset: every attempt -----------------------------------

    def check_sign_up(self, *, address: str) -> None:
        """Count one sign-up, or raise ``RateLimited`` if it is one too many."""
        checks: list[Check] = [
            (item, ("address", address)) for item in self._rates["sign-up-address"]
        ]
        checks += [(item, ("all",)) for item in self._rates["sign-up-all"]]
        self._hit_all("sign-up", checks)

    def check_password_reset(self, *, email: str, address: str) -> None:
        """Count one reset request, or raise ``RateLimited`` if it is one too many."""
        email = email.strip().lower()
        checks: list[Check] = [
            (item, ("email", email)) for item in self._rates["password-reset-email"]
        ]
        checks += [(item, ("address", address)) for item in self._rates["password-reset-address"]]
        self._hit_all("password-reset", checks)

    # --- the other actions ---------------------------------------------------------------

    def check_action(self, action: str, key: str) -> None:
        """Count one ``action`` by ``key`` (an account or user), or raise ``RateLimited``."""
        self._hit_all(action, [(item, (key,)) for item in self._per_key[action]])

    def _hit_all(self, action: str, checks: list[Check]) -> None:
        for item, keys in checks:
            if not self._limiter.hit(item, f"panel-{action}", *keys):
                raise RateLimited(TOO_MANY[action])

    def reset(self) -> None:
        self._storage.reset()
