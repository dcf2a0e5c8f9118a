"""Abuse protection: per-visitor and per-assistant rate limits.

Counted in memory by default, in Redis when ``CHATMETER_REDIS_URL`` is set, so
that limits hold across several web processes.
"""

from __future__ import annotations

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from chatmeter.config import Settings
from chatmeter.errors import RateLimited


class ChatLimiter:
    def __init__(self, settings: Settings) -> None:
        self._storage = storage_from_string(settings.redis_url or "memory://")
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._per_visitor = parse_many(settings.chat_visitor_rate)
        self._per_assistant = parse_many(settings.chat_assistant_rate)

    def check(self, *, assistant_id: int, visitor: str) -> None:
        """Count one message, or raise ``RateLimited`` (counting nothing) if it is one too many."""
        checks: list[tuple[RateLimitItem, *tuple[str, ...]]] = [
            (item, "visitor", str(assistant_id), visitor) for item in self._per_visitor
        ]
        checks += [(item, "assistant", str(assistant_id)) for item in self._per_assistant]
        # test() first, so that a message refused by one limit is not counted by the
        # others; then hit(), which is atomic, so that simultaneous messages cannot all
        # pass a test that only one of them may.
        for item, *keys in checks:
            if not self._limiter.test(item, "chat", *keys):
                raise _refused()
        for item, *keys in checks:
            if not self._limiter.hit(item, "chat", *keys):
                raise _refused()

    def check_rating(self, *, visitor: str) -> None:
        """Count one rating of an answer, at the visitor's message rate but counted apart
        from messages; or raise ``RateLimited``."""
        for item in self._per_visitor:
            if not self._limiter.test(item, "rating", visitor):
                raise RateLimited("too many ratings; please wait a moment and try again")
        for item in self._per_visitor:
            if not self._limiter.hit(item, "rating", visitor):
                raise RateLimited("too many ratings; please wait a moment and try again")

    def reset(self) -> None:
        self._storage.reset()


def _refused() -> RateLimited:
    return RateLimited("too many messages; please wait a moment and try again")
