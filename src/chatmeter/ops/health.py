"""Readiness (``/readyz``): may this process take traffic now?

Three parts: the database answers, Redis answers (when ``CHATMETER_REDIS_URL`` is
set), and the models a chat turn needs are loaded in this process. Each probe runs
on a thread of its own with a deadline, so a database that hangs makes the answer
late by at most ``timeout``, not forever; a probe still hanging from an earlier
request is not started again (the part reads "timeout"). The answer is kept for
``ttl`` seconds: a load balancer polling every process, or a stranger hammering
the URL, costs at most one probe of each part per second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from chatmeter.context import Context

PROBE_TIMEOUT = 1.0
CACHE_SECONDS = 1.0


def ping_database(ctx: Context) -> None:
    with ctx.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def ping_redis(url: str, timeout: float) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def models_loaded(ctx: Context) -> None:
    missing = ctx.models_to_load()
    if missing:
        raise RuntimeError("not loaded yet: " + ", ".join(missing))


@dataclass(frozen=True)
class Report:
    ready: bool
    checks: dict[str, str]  # part → "ok" or what is wrong

    def as_json(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


class Readiness:
    """The cached, time-bounded readiness of one process."""

    def __init__(
        self, ctx: Context, *, timeout: float = PROBE_TIMEOUT, ttl: float = CACHE_SECONDS
    ) -> None:
        self.ctx = ctx
        self.timeout = timeout
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, Report] | None = None
        self._running: dict[str, Future[None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="readyz")

    def probes(self) -> dict[str, Callable[[], None]]:
        settings = self.ctx.settings
        parts: dict[str, Callable[[], None]] = {"database": lambda: ping_database(self.ctx)}
        if settings.redis_url:
            url = settings.redis_url
            parts["redis"] = lambda: ping_redis(url, self.timeout)
        parts["model"] = lambda: models_loaded(self.ctx)
        return parts

    def report(self) -> Report:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.ttl:
                return self._cached[1]
            report = self._probe()
            self._cached = (time.monotonic(), report)
            return report

    def _probe(self) -> Report:
        started: dict[str, Future[None]] = {}
        for name, probe in self.probes().items():
            previous = self._running.get(name)
            if previous is not None and not previous.done():
                started[name] = previous  # still hanging: do not pile up threads
            else:
                started[name] = self._running[name] = self._pool.submit(probe)
        deadline = time.monotonic() + self.timeout
        checks = {}
        for name, future in started.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                checks[name] = "ok"
            except FutureTimeout:
                checks[name] = f"timeout: no answer within {self.timeout:g} s"
            except Exception as exc:
                checks[name] = f"{type(exc).__name__}: {first_line(exc)}"
        return Report(all(v == "ok" for v in checks.values()), checks)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def first_line(exc: BaseException) -> str:
    """An exception's message, short enough for a probe's answer (no SQL, no traceback)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
