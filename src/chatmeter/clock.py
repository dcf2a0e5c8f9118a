"""The injectable clock. Everything that asks for "now" asks a Clock."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that stands still until moved; ``CHATMETER_NOW`` and the tests use it."""

    def __init__(self, at: dt.datetime) -> None:
        self._lock = threading.Lock()
        self._at = _aware(at)

    def now(self) -> dt.datetime:
        with self._lock:
            return self._at

    def set(self, at: dt.datetime) -> None:
        with self._lock:
            self._at = _aware(at)

    def advance(self, **delta: float) -> dt.datetime:
        with self._lock:
            self._at += dt.timedelta(**delta)
            return self._at


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)
