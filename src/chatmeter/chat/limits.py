"""Abuse protection: per-visitor and per-assistant rate limits.

Counted in memory by default, in Redis when ``CHATMETER_REDIS_URL`` is set, so
that limits hold across several web processes. Both count a moving window.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from chatmeter.config import Settings
from chatmeter.errors import RateLimited

# The in-memory windows drop the keys nobody used for a whole window every this many hits.
SWEEP_EVERY = 1024


class _Limiter(Protocol):
    def test(self, item: RateLimitItem, *identifiers: str) -> bool: ...
    def hit(self, item: RateLimitItem, *identifiers: str) -> bool: ...


class MemoryWindows:
    """Moving windows in this process's memory, as ``limits``' ``MovingWindowRateLimiter``
    counts them (an entry counts for ``item.get_expiry()`` seconds after it was made).

    ``limits``' own memory storage starts a ``threading.Timer`` on most hits to drop
    expired entries: a thread started per chat message (1.3 ms under load). Here a
    key's expired entries go when the key is next used, and keys left unused for a
    whole window every ``SWEEP_EVERY`` hits.
    """

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, deque[float]]] = {}
        self._lock = threading.Lock()
        self._hits = 0

    def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Whether one more entry would fit the window now (counting nothing)."""
        with self._lock:
            return self._count(item, identifiers, time.monotonic()) < item.amount

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one entry if it fits the window, atomically; whether it did."""
        now = time.monotonic()
        with self._lock:
            if self._count(item, identifiers, now) >= item.amount:
                return False
            key = item.key_for(*identifiers)
            self._windows.setdefault(key, (float(item.get_expiry()), deque()))[1].append(now)
            self._hits += 1
            if self._hits % SWEEP_EVERY == 0:
                self._sweep(now)
            return True

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()

    def _count(self, item: RateLimitItem, identifiers: tuple[str, ...], now: float) -> int:
        window = self._windows.get(item.key_for(*identifiers))
        if window is None:
            return 0
        expiry, entries = window
        while entries and entries[0] < now - expiry:
            entries.popleft()
        return len(entries)

    def _sweep(self, now: float) -> None:
        for key, (expiry, entries) in list(self._windows.items()):
            if not entries or entries[-1] < now - expiry:
                del self._windows[key]


class ChatLimiter:
    def __init__(self, settings: Settings) -> None:
        self._memory: MemoryWindows | None = None
        self._limiter: _Limiter
        if settings.redis_url:
            self._storage = storage_from_string(settings.redis_url)
            self._limiter = MovingWindowRateLimiter(self._storage)
        else:
            self._limiter = self._memory = MemoryWindows()
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
        if self._memory is not None:
            self._memory.clear()
        else:
            self._storage.reset()


def _refused() -> RateLimited:
    return RateLimited("too many messages; please wait a moment and try again")
